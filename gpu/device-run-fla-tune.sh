#!/bin/bash
# One device call that tunes flash-linear-attention's Triton kernels for the benchmark shapes and
# brings the tuning results back, so that a later call (gpu/device-run-ab.sh FLA_TIME=1) times fla
# with its tuned configs without re-tuning. fla 0.6 caches its choices under keys without B or T,
# so 8,4096,16,128,128 and 2,16384,16,128,128 share one.
#   1. Precompile: $NPRE (default 16) processes each compile a slice of every autotuner's configs
#      (gpu/benches/fla_first_config: GLA_FLA_CFG_SLICE, FLA_CACHE_RESULTS=0: nothing stored but
#      the compiled kernels) at small shapes with the same specialisation (B = 2, T = 1024) into
#      one Triton cache. With CHECKS="P1 P2 ...", each pack's GPU tests, sanitizers, gpu_
#      properties and accuracy sweep (as gpu/device-run-ab.sh PROPS=1 SWEEP=1) run at the same
#      time (logs in logs/checks-<pack>), and with HUGE=1 the first pack's gpu_huge tests
#      (HUGE_FILTER selects one). Two packs let one call validate a candidate and its fallback.
#   2. Tune: one fresh process runs gpu/benches/fla_baseline.py at the benchmark shapes on the
#      quiet GPU; Triton times every config (already compiled) and stores its choice; the
#      timings it prints are fla's tuned ones.
# Needs $PACK (default .gpu-b)/whl with fla-core and flash-linear-attention 0.6.0.
#   With BENCH="P1 P2 ...", each pack's gla-gpu-bench (fwdbwd, then fwd, in one process; a build
#   from before repeated --mode existed runs only the last one) runs between the checks and the
#   tuning, on the quiet GPU, so that one call gives both sides of the speed table. An entry
#   P:S1+S2 times pack P at the shapes S1 and S2 only; P:S1+S2:VAR=X,VAR2=Y (or P::VAR=X for
#   every shape) runs it with those environment variables, e.g. a state-kernel layout
#   (GLA_STATE_BV, GLA_STATE_WARPS) timed without a wrapper pack.
# Packs may be carried as .gpu-*.tgz (gpu/make-pack.sh ... tgz); they are unpacked first.
# Usage: [CHECKS=.gpu-e] [BENCH=".gpu-a .gpu-e"] PACK=.gpu-t bash gpu/device-run-fla-tune.sh
#   (LIMIT = seconds, default 540)
# A folder .fla-cache in the checkout (carried) seeds the cache; the call returns
# $OUT/fla-autotune.tgz (the *.autotune.json files): unpack it into .fla-cache and carry that folder
# with the next call. Logs -> $OUT/logs.tgz (also packed before the tuning, so that a call cut
# short there keeps the checks' and benches' logs).
set -u
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( ${LIMIT:-540} - ($(date +%s) - t0) )); }
R=$PWD; A=$R/${PACK:-.gpu-b}; L=/tmp/logs; mkdir -p $L
. gpu/device-checks.sh
unpack_packs
SH=${SHAPES:-8,4096,16,128,128 8,4096,16,128,256 8,4096,16,64,64 2,16384,16,128,128}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $A/whl/*.whl > $L/pip.log 2>&1
export TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1
mkdir -p $TRITON_CACHE_DIR
[ -d $R/.fla-cache ] && cp -r $R/.fla-cache/. $TRITON_CACHE_DIR/ && echo "seeded with $(find $R/.fla-cache -name '*.autotune.json' | wc -l) tuning results"
PIDS=""
CHECK_PIDS=""
first=1
for C in ${CHECKS:-}; do
  export GLA_REQUIRE_GPU=1
  mkdir -p $L/checks-${C#.}
  start_checks $R/$C/bin $L/checks-${C#.}
  EXTRA_TIMEOUT=300 start_props $R/$C/bin $L/checks-${C#.}
  EXTRA_TIMEOUT=300 start_sweep $R/$C/bin $L/checks-${C#.}
  [ "${HUGE:-0}" = 1 ] && [ $first = 1 ] && start_huge $R/$C/bin $L/checks-${C#.}
  first=0
done
PIDS="$CHECK_PIDS"
PRE=""
small=$(for s in $SH; do IFS=, read b t h k v <<< "$s"; echo "2,1024,$h,$k,$v"; done | sort -u | tr '\n' ' ')
echo "=== precompiling fla's configs in ${NPRE:-16} processes at $small (after $(el) s)"
for i in $(seq 0 $(( ${NPRE:-16} - 1 ))); do
  (PYTHONPATH=/tmp/site:$R/gpu/benches/fla_first_config GLA_FLA_CFG_SLICE=$i/${NPRE:-16} FLA_CACHE_RESULTS=0 \
     timeout 300 python3 gpu/benches/fla_baseline.py --mode both $small > $L/pre-$i.log 2>&1; echo "rc=$?" >> $L/pre-$i.log) &
  PRE="$PRE $!"
done
wait $PRE
echo "=== precompiled after $(el) s: $(grep -l '^rc=0' $L/pre-*.log | wc -l) of ${NPRE:-16} processes rc=0; $(find $TRITON_CACHE_DIR -name '*.cubin' | wc -l) cubins"
grep -h "Error\|error" $L/pre-*.log | sort | uniq -c | head -5
if [ -n "$PIDS" ]; then
  wait $PIDS
  echo "=== checks done after $(el) s"
  for C in $CHECKS; do
    echo "=== checks of $C"
    report_checks $L/checks-${C#.}
    report_extras $L/checks-${C#.}
  done
fi
for E in ${BENCH:-}; do
  # glacheck's kernels on the quiet GPU, before fla's tuning (per-kernel CUDA-event times).
  # An entry PACK[:S1+S2[:VAR=X,VAR2=Y]] times that pack at the shapes S1 and S2 only (all shapes
  # when empty), with those environment variables.
  IFS=: read -r P S V <<< "$E"
  S=${S//+/ }; S=${S:-$SH}; V=${V//,/ }
  echo "=== bench $P at $S${V:+ with $V} (after $(el) s)"
  env $V timeout 150 $R/$P/bin/gla-gpu-bench --mode fwdbwd --mode fwd --iters 20 $S 2>&1 | grep -vE "^\s*$|regs, " \
    | tee -a $L/bench-${P#.}${V:+-${V// /-}}.log
done
# the logs so far, in case the call's time runs out during the tuning
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== tuning fla at the benchmark shapes, fresh process, quiet GPU (after $(el) s)"
PYTHONPATH=/tmp/site timeout $(( $(left) - 10 )) python3 gpu/benches/fla_baseline.py --mode both $SH 2>&1 | grep -v Warning | tee $L/fla.log
(cd $TRITON_CACHE_DIR && find . -name '*.autotune.json' | tar czf $OUT/fla-autotune.tgz -T -)
echo "tuning results returned: $(tar tzf $OUT/fla-autotune.tgz | wc -l)"
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== total $(el) s"
