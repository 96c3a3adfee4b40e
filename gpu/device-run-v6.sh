#!/usr/bin/env bash
# One device call for v6 (causal diagonal with the all-safe fast path; ex2/rcp.approx.ftz intra
# kernels as the default), about 5 minutes:
#  phase 1 (in parallel, correctness only): gpu_forward + gpu_causality tests for the default and the
#           GLA_INTRA_ACCURATE=1 intra kernels, memcheck + racecheck over subsets, fla wheels' install
#           (no Triton warm-up: fla's autotune results are cached on disk by shape-independent keys,
#           and a small-shape warm-up made chunk_gla 60% slower in device run 19);
#  phase 2 (alone on the GPU, timings): fla chunk_gla first, then glacheck bench (default, accurate,
#           default again).
# Usage (repo root on the GPU machine): bash gpu/device-run-v6.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export GLA_REQUIRE_GPU=1 LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64
R=$PWD; B=$R/.gpu-pack/bin
SHAPES=${SHAPES:-"8,4096,16,128,128 8,4096,16,128,256 8,2048,16,128,128 8,16384,16,128,128 2,16384,16,128,128 8,4096,16,64,64"}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
t0=$(date +%s)
run_tests() { # name accurate bin threads
  (cd gpu && GLA_INTRA_ACCURATE=$2 CARGO_MANIFEST_DIR=$R/gpu timeout ${TT:-160} $B/$3 --test-threads $4 --nocapture > $OUT/$1.log 2>&1; echo "rc=$?" >> $OUT/$1.log)
}
run_tests fwd-default 0 gla-gpu__test__gpu_forward 6 &
run_tests causal-default 0 gla-gpu__test__gpu_causality 3 &
run_tests fwd-accurate 1 gla-gpu__test__gpu_forward 6 &
run_tests causal-accurate 1 gla-gpu__test__gpu_causality 3 &
(cd gpu && for tool in memcheck racecheck; do
   CARGO_MANIFEST_DIR=$R/gpu timeout ${ST:-70} compute-sanitizer --tool $tool --error-exitcode 9 \
     $B/gla-gpu__test__gpu_causality --test-threads 1 findings_section_4_regression > $OUT/$tool.log 2>&1; echo "rc=$?" >> $OUT/$tool.log
 done
 CARGO_MANIFEST_DIR=$R/gpu timeout ${ST2:-60} compute-sanitizer --tool memcheck --error-exitcode 9 \
   $B/gla-gpu__test__gpu_forward --test-threads 1 diagonal_factorization f2_minus_inf >> $OUT/memcheck.log 2>&1; echo "rc=$?" >> $OUT/memcheck.log) &
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 &
wait
echo "=== phase 1 done after $(( $(date +%s) - t0 )) s"
for f in fwd-default causal-default fwd-accurate causal-accurate; do
  echo "--- $f: $(grep -E '^test result|rc=' $OUT/$f.log | tr '\n' ' ')"
  grep -E "panicked|FAILED|failed" $OUT/$f.log | head -5
done
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|rc=" $OUT/memcheck.log $OUT/racecheck.log
grep -hE "identical" $OUT/causal-default.log $OUT/causal-accurate.log
echo "=== fla"
PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 120 python3 gpu/benches/fla_baseline.py $SHAPES 2>&1 | grep -v Warning | tee $OUT/fla.log
echo "=== bench default"; timeout 100 $B/gla-gpu-bench $SHAPES 2>&1 | tee $OUT/bench.log | grep -v gla_fwd_state
echo "=== bench accurate"; GLA_INTRA_ACCURATE=1 timeout 40 $B/gla-gpu-bench 8,4096,16,128,128 8,4096,16,128,256 2>&1 | tee $OUT/bench-accurate.log | tail -3
echo "=== bench default again"; timeout 30 $B/gla-gpu-bench 8,4096,16,128,128 2>&1 | tee -a $OUT/bench.log | tail -2
echo "=== total $(( $(date +%s) - t0 )) s"
