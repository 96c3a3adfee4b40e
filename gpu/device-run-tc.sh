#!/bin/bash
# One device call validating the tensor-core kernels of this branch (gla_fwd_intra_tc_*,
# gla_dqk_* = bwd_dqk_tc, the local-form kernel's rounded dA): GPU tests and sanitizers
# (GLA_REQUIRE_GPU=1), glacheck bench fwdbwd/fwd with per-kernel times, fla chunk_gla fwdbwd in a
# fresh process, fla's and our kernels' outputs judged by `glacheck verify` (ours with --plan
# tensor-core), the pytest example, a short ncu. Logs -> $OUT/logs.tgz.
# Needs $PACK (default .gpu-b): bin/ with the release builds gla-gpu__test__gpu_{forward,
# causality,backward}, gla-gpu-bench and glacheck (built as gpu/device-run.sh describes),
# whl/ with flash-linear-attention + fla-core 0.6.0 and the glacheck wheel, widen.py (widens a
# golden to K = V = 64). Usage: bash gpu/device-run-tc.sh  (LIMIT=seconds of work, default 400)
set -u
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( ${LIMIT:-400} - ($(date +%s) - t0) )); }
R=$PWD; A=$R/${PACK:-.gpu-b}; B=$A/bin; L=/tmp/logs; mkdir -p $L
export GLA_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $A/whl/*.whl > $L/pip.log 2>&1 &
. gpu/device-checks.sh
start_checks $B $L
wait
echo "=== phase 1 (tests, sanitizers) done after $(el) s"
report_checks $L
grep -hE "worst|ratio" $L/gpu_backward.log | head -30 | cut -c1-300
SH="8,4096,16,128,128 8,4096,16,128,256 8,4096,16,64,64 2,16384,16,128,128"
echo "=== glacheck bench fwdbwd (after $(el) s)"
timeout 60 $B/gla-gpu-bench --mode fwdbwd --iters 20 $SH 2>&1 | tee $L/bench.log
timeout 30 $B/gla-gpu-bench --mode fwd --iters 20 $SH 2>&1 | tee -a $L/bench.log
export PYTHONPATH=/tmp/site
echo "=== fla chunk_gla fwdbwd, fresh process (after $(el) s)"
PYTHONUNBUFFERED=1 timeout $(( $(left) - 110 )) python3 gpu/benches/fla_baseline.py --mode fwdbwd 8,4096,16,128,128 8,4096,16,64,64 2,16384,16,128,128 2>&1 | grep -v Warning | tee $L/fla.log
echo "=== fla + our GPU kernels judged by glacheck verify (after $(el) s)"
G=$B/glacheck; mkdir -p /tmp/wide /tmp/fla /tmp/gpu $L/v
GOLD=$(ls fixtures/golden/*.safetensors | grep -v -e f3_positive_gate -e f9_linear_alpha)
for f in $GOLD; do python3 gpu/benches/widen_golden.py $f /tmp/wide/$(basename $f .safetensors)_w64.safetensors; done
PYTHONUNBUFFERED=1 timeout $(( $(left) - 45 )) python3 examples/fla_outputs.py $GOLD /tmp/wide/*.safetensors --out-dir /tmp/fla > $L/fla_outputs.log 2>&1; echo "fla_outputs rc=$?"
grep -E "^error" $L/fla_outputs.log | cut -c1-200
for f in $GOLD /tmp/wide/*.safetensors; do
  n=$(basename $f .safetensors)
  for k in fused_recurrent chunk; do
    c=/tmp/fla/$n.fla-$k-bf16.safetensors
    [ -f $c ] || { echo "VERDICT $n fla-$k missing"; continue; }
    $G verify $f $c --precision bf16 --json > $L/v/$n.fla-$k.json 2>$L/v/$n.fla-$k.err; rc=$?
    echo "VERDICT $n fla-$k rc=$rc $(python3 -c "import json;d=json.load(open('$L/v/$n.fla-$k.json'));print(' '.join(t['name']+':'+('ok' if t['pass'] else 'FAIL') for t in d['tensors']))" 2>/dev/null)"
  done
done
for f in /tmp/wide/*.safetensors; do
  [ $(left) -gt 25 ] || { echo "(out of time: our GPU kernels not judged further)"; break; }
  n=$(basename $f .safetensors)
  if timeout 30 $G eval --impl gpu --round bf16 --backward $f -o /tmp/gpu/$n.safetensors 2>$L/v/$n.gpu.err; then
    $G verify $f /tmp/gpu/$n.safetensors --precision bf16 --plan tensor-core --json > $L/v/$n.gpu.json 2>>$L/v/$n.gpu.err; rc=$?
    echo "VERDICT $n glacheck-gpu-bf16 rc=$rc $(python3 -c "import json;d=json.load(open('$L/v/$n.gpu.json'));print(' '.join(t['name']+':'+('ok' if t['pass'] else 'FAIL') for t in d['tensors']))" 2>/dev/null)"
  else echo "VERDICT $n glacheck-gpu-bf16 eval-failed $(tail -1 $L/v/$n.gpu.err)"; fi
done
[ $(left) -gt 40 ] && echo "=== pytest examples/test_fla_gla.py (after $(el) s, $(left) s left)"
[ $(left) -gt 40 ] && GLACHECK_REPORT=$L/fla-pytest.jsonl timeout $(( $(left) - 5 )) python3 -m pytest -q -p no:cacheprovider examples/test_fla_gla.py > $L/pytest.log 2>&1; echo "pytest rc=$?"; tail -25 $L/pytest.log | cut -c1-300
if [ $(left) -gt 60 ]; then
  echo "=== ncu (after $(el) s)"
  timeout $(( $(left) - 10 )) ncu --kernel-name regex:"gla_fwd_intra_tc|gla_bwd_dqk_bf16|gla_bwd_state|gla_fwd_state|gla_bwd_dv" --launch-skip 5 --launch-count 5 --section SpeedOfLight --section Occupancy --section LaunchStats $B/gla-gpu-bench --mode fwdbwd --iters 1 8,4096,16,128,128 > $L/ncu.log 2>&1; echo "ncu rc=$?"
  grep -E "gla_|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Block Limit Shared|Theoretical Occupancy" $L/ncu.log | head -60
fi
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== total $(el) s"
