#!/usr/bin/env bash
# One device call: correctness (tests, sanitizers), the PyTorch/fla verify example, then timings
# (fla chunk_gla first, in a fresh process with the benchmark shapes only, then glacheck bench).
# Usage, from the repository root on the GPU machine:  bash gpu/device-run.sh [STEP...]
# Needs, next to the sources: $PACK (default .gpu-pack)/bin holding the release builds of the test
# binaries, named <crate>__test__<test> (e.g. gla-gpu__test__gpu_forward), and of the glacheck and
# gla-gpu-bench binaries (built elsewhere with `cargo test --release --no-run` and
# `cargo build --release --bins` for -p gla-gpu -p glacheck, plus -p gla-proptests for the props
# step, then copied); for the verify and fla steps, the Python wheels they import beyond torch
# (e.g. flash-linear-attention, safetensors) in .whl/, installed with pip --no-index.
# The tests run from their crate folder with CARGO_MANIFEST_DIR set, as cargo would.
# Steps: tests props san race verify fla bench ncu (default: tests san verify fla bench).
#   race: compute-sanitizer racecheck over every test of each binary in RACESPLIT (default
#   gpu_backward), one process per test, all in parallel (ST seconds each); one log, race.log.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export GLA_REQUIRE_GPU=1 LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64
R=$PWD; B=$R/${PACK:-.gpu-pack}/bin
SHAPES=${SHAPES:-"8,4096,16,128,128 8,4096,16,128,256 8,2048,16,128,128 8,16384,16,128,128 2,16384,16,128,128 8,4096,16,64,64"}
STEPS=${*:-tests san verify fla bench}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
t0=$(date +%s)
has() { [[ " $STEPS " == *" $1 "* ]]; }
testbin() { # log-name binary threads [filters]
  local name=$1 bin=$2 th=$3; shift 3
  (cd gpu && CARGO_MANIFEST_DIR=$R/gpu timeout ${TT:-200} $B/$bin --test-threads $th --nocapture "$@" > $OUT/$name.log 2>&1; echo "rc=$?" >> $OUT/$name.log)
}
san() { # tool binary [filters]
  local tool=$1 bin=$2; shift 2
  (cd gpu && CARGO_MANIFEST_DIR=$R/gpu timeout ${ST:-240} compute-sanitizer --tool $tool --print-limit 0 --error-exitcode 9 $B/$bin --test-threads 1 "$@" > $OUT/$tool-$bin.log 2>&1; echo "rc=$? ($bin $*)" >> $OUT/$tool-$bin.log)
}
if has race; then
  for t in ${RACESPLIT:-gpu_backward}; do
    bin=gla-gpu__test__$t
    for name in $(cd gpu && $B/$bin --list 2>/dev/null | sed -n 's/: test$//p'); do
      (cd gpu && CARGO_MANIFEST_DIR=$R/gpu timeout ${ST:-240} compute-sanitizer --tool racecheck --print-limit 0 --error-exitcode 9 \
         $B/$bin --test-threads 1 --exact $name > /tmp/race-$t-$name.log 2>&1; echo "rc=$? ($t $name)" >> /tmp/race-$t-$name.log) &
    done
  done
fi
if has tests || has san || has verify || has props || has race; then
  has tests && { for t in ${TESTS:-gpu_forward gpu_causality gpu_backward}; do
      [ -x $B/gla-gpu__test__$t ] && testbin $t gla-gpu__test__$t 6 & done; }
  if has san; then
    for t in ${MEMCHECK:-gpu_forward gpu_backward}; do [ -x $B/gla-gpu__test__$t ] && san memcheck gla-gpu__test__$t & done
    for t in ${RACECHECK:-gpu_forward gpu_causality gpu_backward}; do [ -x $B/gla-gpu__test__$t ] && san racecheck gla-gpu__test__$t ${RFILTER:-} & done
  fi
  has props && [ -x $B/gla-proptests__test__properties ] && \
    (cd proptests && CARGO_MANIFEST_DIR=$R/proptests GLA_REQUIRE_GPU=1 timeout ${PT:-300} $B/gla-proptests__test__properties gpu_ > $OUT/props.log 2>&1; echo "rc=$?" >> $OUT/props.log) &
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > $OUT/pip.log 2>&1 &
  wait
  echo "=== phase 1 (correctness) done after $(( $(date +%s) - t0 )) s"
  for f in gpu_forward gpu_causality gpu_backward; do
    [ -f $OUT/$f.log ] || continue
    echo "--- $f: $(grep -E '^test result|^rc=' $OUT/$f.log | tr '\n' ' ')"
    grep -E "panicked|FAILED|failed|worst|ratio" $OUT/$f.log | head -${TAIL:-12}
  done
  [ -f $OUT/props.log ] && { echo "--- proptests gpu_ properties"; grep -vE "^\s*$" $OUT/props.log | tail -${PTAIL:-40}; }
  for f in $OUT/memcheck-*.log $OUT/racecheck-*.log; do [ -f $f ] && { echo "--- $(basename $f)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^test result|^rc=" $f | sort | uniq -c; }; done
  if has race; then
    cat /tmp/race-*.log > $OUT/race.log 2>/dev/null
    echo "--- racecheck, one process per test:"
    for f in /tmp/race-*.log; do echo "$(basename $f .log): $(grep -E "RACECHECK SUMMARY|^test result|^rc=" $f | tr '\n' ' ')"; done
  fi
fi
if has verify; then
  echo "=== verify_with_pytorch (fla)"
  for fxdt in ${VERIFY_CASES:-k64_partial_resets:bfloat16 k64_partial_resets:float32 mild:bfloat16 mild:float32 varlen:bfloat16 partial_t100:bfloat16 scalar_mild:bfloat16 f2_neg_inf_gate:bfloat16}; do
    fx=${fxdt%%:*}; dt=${fxdt##*:}; {
      echo "--- $fx $dt"
      PYTHONPATH=/tmp/site timeout 120 python3 examples/verify_with_pytorch.py fixtures/golden/$fx.safetensors --impl fla --dtype $dt --glacheck $B/glacheck --out-dir /tmp/v-$fx-$dt 2>&1 | grep -v Warning | tail -${VTAIL:-14}
    }
  done 2>&1 | tee $OUT/verify.log
fi
if has fla; then
  echo "=== fla (fresh process, benchmark shapes only)"
  PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout ${FT:-300} python3 gpu/benches/fla_baseline.py --mode ${FLA_MODE:-fwd} $SHAPES 2>&1 | grep -v Warning | tee $OUT/fla.log
fi
if has bench; then
  echo "=== glacheck bench"; timeout ${BT:-150} $B/gla-gpu-bench ${BENCH_ARGS:-} $SHAPES 2>&1 | tee $OUT/bench.log
fi
if has ncu; then
  echo "=== ncu"; timeout ${NT:-150} ncu --kernel-name regex:${NCU_KERNEL:-gla_fwd_intra} --launch-skip 1 --launch-count 1 --set full --import-source yes -o $OUT/prof $B/gla-gpu-bench --iters 1 8,4096,16,128,128 > $OUT/ncu.log 2>&1; echo "rc=$?"
  ncu --import $OUT/prof.ncu-rep --page details 2>/dev/null | grep -E "Duration|Throughput|Occupancy|Warp Cycles|Issued|Eligible|Registers|Block Limit|Executed Ipc" | head -40
fi
echo "=== total $(( $(date +%s) - t0 )) s"
