#!/bin/bash
# One device call that warms flash-linear-attention's on-disk Triton autotune cache for the
# benchmark shapes and brings the tuning results back, so that later calls time fla without
# re-tuning (about 200 s per (K, V) head shape; fla 0.6 caches its choices under keys without B or
# T, so 8,4096,16,128,128 and 2,16384,16,128,128 share one). Also prints fla's timings.
# Needs $PACK (default .gpu-b)/whl with fla-core and flash-linear-attention 0.6.0.
# Usage: SHAPES="8,4096,16,128,128 ..." bash gpu/device-run-fla-tune.sh   (LIMIT = seconds, default 520)
# A folder .fla-cache in the checkout (carried) seeds the cache; the call returns
# $OUT/fla-autotune.tgz (the *.autotune.json files): unpack it into .fla-cache and carry that folder
# with the next call (gpu/device-run-ab.sh FLA_TIME=1 uses it the same way).
set -u
R=$PWD; A=$R/${PACK:-.gpu-b}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $A/whl/*.whl > /tmp/pip.log 2>&1
export PYTHONPATH=/tmp/site TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1
mkdir -p $TRITON_CACHE_DIR
[ -d $R/.fla-cache ] && cp -r $R/.fla-cache/. $TRITON_CACHE_DIR/ && echo "seeded with $(find $R/.fla-cache -name '*.autotune.json' | wc -l) tuning results"
timeout ${LIMIT:-520} python3 gpu/benches/fla_baseline.py --mode both ${SHAPES:-8,4096,16,128,128 8,4096,16,128,256 8,4096,16,64,64 2,16384,16,128,128} 2>&1 | grep -v Warning
(cd $TRITON_CACHE_DIR && find . -name '*.autotune.json' | tar czf $OUT/fla-autotune.tgz -T -)
echo "tuning results returned: $(tar tzf $OUT/fla-autotune.tgz | wc -l)"
