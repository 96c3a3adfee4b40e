#!/usr/bin/env bash
# One device call: tests (+ optional sanitizer), glacheck GPU bench, fla chunk_gla baseline.
# Usage (from the repo root on the GPU machine): bash gpu/device-run.sh [tests|san|bench|fla]...
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export GLA_REQUIRE_GPU=1 LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64
B=.gpu-pack/bin
SHAPES=${SHAPES:-"8,4096,16,128,128 8,4096,16,128,256 8,2048,16,128,128 8,16384,16,128,128 2,16384,16,128,128 8,4096,16,64,64"}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
for step in "$@"; do
  case $step in
    tests)
      echo "=== tests"; (cd gpu && CARGO_MANIFEST_DIR=$PWD timeout ${TT:-300} ../$B/gla-gpu__test__gpu_forward --test-threads ${THREADS:-8} --nocapture ${FILTER:-} 2>&1) | tee $OUT/tests.log | grep -v "^\s*$" | grep -E "test |result|panicked|SKIP|error|ratio" | tail -${TAIL:-80} ;;
    nvrtc)
      (cd gpu && GLA_REQUIRE_NVRTC=1 ../$B/gla-gpu__test__nvrtc_compile 2>&1 | tail -3) ;;
    memcheck|racecheck)
      echo "=== compute-sanitizer $step"; (cd gpu && CARGO_MANIFEST_DIR=$PWD timeout ${ST:-200} compute-sanitizer --tool $step --error-exitcode 9 ../$B/gla-gpu__test__gpu_forward --test-threads 1 ${SFILTER:-} 2>&1) > $OUT/$step.log; echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Error|Hazard" $OUT/$step.log | sort | uniq -c | head -20 ;;
    bench)
      echo "=== glacheck bench"; timeout ${BT:-150} $B/gla-gpu-bench $SHAPES 2>&1 | tee $OUT/bench.log ;;
    cli)
      echo "=== glacheck bench (CLI)"; args=""; for s in $SHAPES; do args="$args --shape $s"; done
      timeout ${BT:-150} $B/glacheck bench --impl gpu --mode fwd $args 2>&1 | tee $OUT/cli-bench.log
      $B/glacheck bench --impl gpu --mode bwd --shape 1,64,1,64,64 2>&1 | tail -2 ;;
    fla)
      echo "=== fla"; python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -2
      PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout ${FT:-200} python3 gpu/benches/fla_baseline.py $SHAPES 2>&1 | grep -v Warning | tee $OUT/fla.log ;;
  esac
done
# extra steps (appended): ncu profile of the intra kernel at the main shape
for step in "$@"; do
  case $step in
    ncu)
      echo "=== ncu"; timeout ${NT:-150} ncu --kernel-name regex:gla_fwd_intra --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis $B/gla-gpu-bench --iters 1 8,4096,16,128,128 > $OUT/ncu.log 2>&1; echo "rc=$?"
      grep -E "Duration|Throughput|Occupancy|Stall|Warp Cycles|Issued|Eligible|Active Warps|Registers|Shared Memory Config|Block Limit|Bank" $OUT/ncu.log | head -60 ;;
  esac
done
