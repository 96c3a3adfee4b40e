#!/usr/bin/env bash
# HISTORICAL: the script of device run 19 (v5). Since v6 the fast intra kernels are the default and
# GLA_INTRA_FAST is ignored (GLA_INTRA_ACCURATE=1 selects the others); use gpu/device-run-v6.sh.
# One device call for v5 (causal diagonal + the GLA_INTRA_FAST variant), about 5 minutes:
#  phase 1 (in parallel, correctness only): gpu_forward + gpu_causality tests for the default and the
#           FAST intra kernel, memcheck over a subset, the fla wheels' install and a Triton warm-up;
#  phase 2 (alone on the GPU, timings): glacheck bench default, FAST, default again, then fla.
# Usage (repo root on the GPU machine): bash gpu/device-run-v5.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export GLA_REQUIRE_GPU=1 LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64
R=$PWD; B=$R/.gpu-pack/bin
SHAPES=${SHAPES:-"8,4096,16,128,128 8,4096,16,128,256 8,2048,16,128,128"}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
t0=$(date +%s)
run_tests() { # name fast bin threads
  (cd gpu && GLA_INTRA_FAST=$2 CARGO_MANIFEST_DIR=$R/gpu timeout ${TT:-160} $B/$3 --test-threads $4 --nocapture > $OUT/$1.log 2>&1; echo "rc=$?" >> $OUT/$1.log)
}
run_tests fwd-default 0 gla-gpu__test__gpu_forward 6 &
run_tests causal-default 0 gla-gpu__test__gpu_causality 3 &
run_tests fwd-fast 1 gla-gpu__test__gpu_forward 6 &
run_tests causal-fast 1 gla-gpu__test__gpu_causality 3 &
(cd gpu && CARGO_MANIFEST_DIR=$R/gpu timeout ${ST:-90} compute-sanitizer --tool memcheck --error-exitcode 9 \
   $B/gla-gpu__test__gpu_causality --test-threads 1 findings_section_4_regression > $OUT/memcheck.log 2>&1; echo "rc=$?" >> $OUT/memcheck.log
 CARGO_MANIFEST_DIR=$R/gpu GLA_INTRA_FAST=1 timeout ${ST2:-70} compute-sanitizer --tool memcheck --error-exitcode 9 \
   $B/gla-gpu__test__gpu_forward --test-threads 1 diagonal_factorization f2_minus_inf >> $OUT/memcheck.log 2>&1; echo "rc=$?" >> $OUT/memcheck.log) &
(python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1
 PYTHONPATH=/tmp/site timeout 150 python3 gpu/benches/fla_baseline.py 1,256,16,128,128 1,256,16,128,256 > /tmp/fla-warm.log 2>&1) &
wait
echo "=== phase 1 done after $(( $(date +%s) - t0 )) s"
for f in fwd-default causal-default fwd-fast causal-fast; do
  echo "--- $f: $(grep -E '^test result|rc=' $OUT/$f.log | tr '\n' ' ')"
  grep -E "panicked|FAILED|failed" $OUT/$f.log | head -5
done
grep -E "ERROR SUMMARY|test result|rc=" $OUT/memcheck.log
grep -hE "identical" $OUT/causal-default.log $OUT/causal-fast.log
echo "=== bench default"; timeout 45 $B/gla-gpu-bench $SHAPES 2>&1 | tee $OUT/bench.log
echo "=== bench FAST";    GLA_INTRA_FAST=1 timeout 45 $B/gla-gpu-bench $SHAPES 2>&1 | tee $OUT/bench-fast.log | grep -v gla_fwd_state
echo "=== bench default again"; timeout 30 $B/gla-gpu-bench 8,4096,16,128,128 2>&1 | tee -a $OUT/bench.log | tail -2
echo "=== fla ($(tail -1 /tmp/fla-warm.log))"
PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 80 python3 gpu/benches/fla_baseline.py $SHAPES 2>&1 | grep -v Warning | tee $OUT/fla.log
echo "=== total $(( $(date +%s) - t0 )) s"
