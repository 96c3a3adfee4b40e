#!/bin/bash
# One device call that profiles a build's kernels in depth with Nsight Compute, for the kernel
# work that follows (what limits each kernel, and where in its SASS the warps stall).
#   1. ncu --set full on one launch of each kernel matching $KERNELS (default: the bf16 forward
#      intra, both state kernels, dq/dk and dv kernels) at $SHAPE (default the main shape,
#      8,4096,16,128,128), in `gla-gpu-bench --mode $MODE` (default fwdbwd; fwd profiles the
#      forward alone, whose state kernel stores no chunk states): logs/ncu-full.txt (every
#      section's details).
#   2. Per-instruction metrics (stall samples, executed instructions) of the same launches:
#      logs/ncu-src.csv, the SASS with its metrics, one table per profiled launch
#      (`python3 gpu/benches/ncu_phases.py logs/ncu-src.csv [kernel]` sums it phase by phase).
# Pack: $PACK/bin/gla-gpu-bench (a release build: gpu/make-pack.sh, folder or .tgz). Logs ->
# $OUT/logs.tgz.
# Usage: PACK=.gpu-n bash gpu/device-run-ncu.sh   (LIMIT = seconds of work, default 300)
set -u
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( ${LIMIT:-300} - ($(date +%s) - t0) )); }
R=$PWD; B=$R/${PACK:-.gpu-n}/bin; L=/tmp/logs; mkdir -p $L
. gpu/device-checks.sh
unpack_packs
K=${KERNELS:-gla_fwd_intra_tc_bf16|gla_fwd_state_bf16_k128_v32|gla_bwd_state_bf16_k128|gla_bwd_dqk_bf16|gla_bwd_dv_bf16}
SH=${SHAPE:-8,4096,16,128,128}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
# the bench's first iteration is a warm-up; profile the second iteration's launches (each kernel
# in $KERNELS runs once per iteration)
N=$(echo "$K" | tr '|' '\n' | wc -l)
timeout $(( $(left) - 20 )) ncu --kernel-name regex:"$K" --launch-skip $N --launch-count $N --set full \
  --import-source no -f -o $L/ncu-full $B/gla-gpu-bench --mode ${MODE:-fwdbwd} --iters 2 $SH > $L/ncu-run.log 2>&1
echo "ncu rc=$? after $(el) s"
if [ -f $L/ncu-full.ncu-rep ]; then
  ncu --import $L/ncu-full.ncu-rep --page details --print-details all > $L/ncu-full.txt 2>&1
  ncu --import $L/ncu-full.ncu-rep --page source --csv --print-source sass > $L/ncu-src.csv 2>&1
  grep -E "^  gla_|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issued Warp|No Eligible|Warp Cycles Per Issued" $L/ncu-full.txt | cut -c1-200 | head -80
fi
ls -la $L
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== total $(el) s"
