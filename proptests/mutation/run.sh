#!/bin/bash
# usage: run.sh MUTATION ; runs the suite in the sandbox, output in /tmp/mutdrv/$M.log
M=$1
cd /tmp/mut && python3 /tmp/mutdrv/mutate.py $M || exit 1
rm -f /tmp/mut/proptests/proptest-regressions/*.txt
export CARGO_TARGET_DIR=/tmp/mut-target
( time nice cargo test --no-fail-fast -p gla-proptests --test properties --test failure_modes ) > /tmp/mutdrv/$M.log 2>&1
echo "exit $?" >> /tmp/mutdrv/$M.log
