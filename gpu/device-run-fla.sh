#!/bin/bash
# One device call: the >2^31-element forward test (background), fla 0.6.0 on the goldens widened
# to K = V = 64 judged by `glacheck verify`, the pytest recipe examples/test_fla_gla.py (bf16 and
# fp32 as tf32-rz; both with fla's first admissible config per kernel instead of autotuning:
# gpu/benches/fla_first_config/sitecustomize.py), then our bench and fla's tuned forward timing
# with what is left (BENCHMARKS.md G5, V3). Needs $PACK (default .gpu-b): bin/ (release builds
# of gla-gpu__test__gpu_huge, gla-gpu-bench and glacheck, built as gpu/device-run.sh describes)
# and whl/ (fla-core and flash-linear-attention 0.6.0, the glacheck wheel). Usage: bash gpu/device-run-fla.sh
# (LIMIT=seconds of work, default 540). Logs -> $OUT/logs.tgz.
set -u
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( ${LIMIT:-540} - ($(date +%s) - t0) )); }
R=$PWD; A=$R/${PACK:-.gpu-b}; B=$A/bin; L=/tmp/logs; mkdir -p $L/v
export GLA_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $A/whl/*.whl > $L/pip.log 2>&1
export PYTHONPATH=/tmp/site:$R/gpu/benches/fla_first_config
(cd gpu && CARGO_MANIFEST_DIR=$R/gpu /usr/bin/time -v timeout 240 $B/gla-gpu__test__gpu_huge --ignored --test-threads 1 --nocapture forward_past > $L/huge.log 2>&1; echo "rc=$?" >> $L/huge.log) &
HUGE=$!
G=$B/glacheck; mkdir -p /tmp/wide /tmp/fla
GOLD=$(ls fixtures/golden/*.safetensors | grep -v -e f3_positive_gate -e f9_linear_alpha)
for f in $GOLD; do python3 gpu/benches/widen_golden.py $f /tmp/wide/$(basename $f .safetensors)_w64.safetensors; done
echo "=== fla outputs on the widened goldens (after $(el) s)"
GLA_FLA_NO_AUTOTUNE=1 PYTHONUNBUFFERED=1 timeout 150 python3 examples/fla_outputs.py /tmp/wide/*.safetensors --out-dir /tmp/fla > $L/fla_outputs_w.log 2>&1; echo "fla_outputs wide rc=$? after $(el) s"
grep -hE "^error|Error" $L/fla_outputs*.log | sort | uniq -c | head -10 | cut -c1-250
for f in /tmp/wide/*.safetensors; do
  n=$(basename $f .safetensors)
  for k in fused_recurrent chunk; do
    c=/tmp/fla/$n.fla-$k-bf16.safetensors
    [ -f $c ] || { echo "VERDICT $n fla-$k missing"; continue; }
    $G verify $f $c --precision bf16 --json > $L/v/$n.fla-$k.json 2>$L/v/$n.fla-$k.err; rc=$?
    $G verify $f $c --precision bf16 > $L/v/$n.fla-$k.txt 2>&1
    echo "VERDICT $n fla-$k rc=$rc $(python3 -c "import json;d=json.load(open('$L/v/$n.fla-$k.json'));print(' '.join(t['name']+':'+('ok' if t['pass'] else 'FAIL') for t in d['tensors']))" 2>/dev/null)"
  done
done
echo "=== pytest examples/test_fla_gla.py (after $(el) s, $(left) s left)"
GLA_FLA_NO_AUTOTUNE=1 GLACHECK_REPORT=$L/fla-pytest.jsonl PYTHONUNBUFFERED=1 timeout $(( $(left) - 110 )) python3 -m pytest -q -p no:cacheprovider -rfE --tb=line examples/test_fla_gla.py > $L/pytest.log 2>&1; echo "pytest rc=$?"
grep -E "passed|failed|FAILED|ERROR" $L/pytest.log | tail -40 | cut -c1-250
wait $HUGE
echo "=== huge (after $(el) s)"; grep -E "^test |bit-identical|panicked|Err|^rc=|elements|Maximum resident|Elapsed" $L/huge.log | head -20 | cut -c1-300
echo "=== our bench (after $(el) s)"
SH="8,4096,16,128,128 8,4096,16,128,256 8,4096,16,64,64 2,16384,16,128,128"
timeout 40 $B/gla-gpu-bench --mode fwdbwd --iters 20 $SH 2>&1 | grep -E "^ *[0-9]|B,T" | tee $L/bench.log
timeout 25 $B/gla-gpu-bench --mode fwd --iters 20 $SH 2>&1 | grep -E "^ *[0-9]|B,T" | tee -a $L/bench.log
echo "=== fla tuned, main shape fwd (after $(el) s, $(left) s left)"
[ $(left) -gt 20 ] && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout $(( $(left) - 8 )) python3 gpu/benches/fla_baseline.py --mode fwd 8,4096,16,128,128 8,4096,16,64,64 8,4096,16,128,256 2>&1 | grep -v Warning | tee $L/fla.log
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== total $(el) s"
