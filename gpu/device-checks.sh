# Shared by the device scripts (source it): the GPU correctness checks of one build.
#   start_checks BIN LOGS  starts gla-gpu's GPU tests (gpu_forward, gpu_causality, gpu_backward,
#                          4 threads each) and compute-sanitizer memcheck + racecheck over
#                          gpu_backward's `sanitizer_coverage` (every kernel; every report
#                          printed: --print-limit 0) in the background,
#                          from gpu/ with CARGO_MANIFEST_DIR set as cargo would (sanitizers stop after
#                          $SAN_TIMEOUT s, default 220); their process ids
#                          join CHECK_PIDS (the caller empties it first; wait $CHECK_PIDS), so
#                          that several packs' checks can run at once (one LOGS folder each).
#   report_checks LOGS     prints each test binary's result and failures, each sanitizer's summary.
#   start_props BIN LOGS   starts the property suite's gpu_ properties (gla-proptests__test__properties
#                          in BIN) in the background; its process id joins CHECK_PIDS.
#   start_sweep BIN LOGS   starts BIN/glacheck's bf16 accuracy sweep of docs/sweep/gpu-h100/ (both dg
#                          forms, K=V=64, T=64..2048) into LOGS/sweep; its process id joins CHECK_PIDS.
#   start_huge BIN LOGS    starts gpu_huge's >2^31-element tests (--ignored, $HUGE_FILTER selects;
#                          $HUGE_TIMEOUT s, default 300) in the background; its pid joins CHECK_PIDS.
#   report_extras LOGS     prints the properties', the sweep's and gpu_huge's results (those that
#                          ran), the sweep's worst ratio per implementation and output, and
#                          whether its CSV equals the committed docs/sweep/gpu-h100/sweep.csv
#                          byte for byte (a kernel change that keeps every value keeps it equal).
#   unpack_packs           unpacks every .gpu-*.tgz of the checkout (gpu/make-pack.sh ... tgz) in
#                          place, so that the scripts find DEST/bin as with a carried folder.
# Each extra stops after $EXTRA_TIMEOUT s (default 240).
# Sourcing it sets GLA_PTX_CACHE (default /tmp/gla-ptx-cache) unless the caller has: the processes
# of a call then compile each pack's kernel sources once (gla-gpu's ptx_cache), not once each.
# BIN holds the release test binaries gla-gpu__test__<name>; GLA_REQUIRE_GPU=1 is the caller's.
export GLA_PTX_CACHE=${GLA_PTX_CACHE-/tmp/gla-ptx-cache}
start_checks() {
  local bin=$1 logs=$2 root=$PWD t tool
  for t in gpu_forward gpu_causality gpu_backward; do
    (cd "$root/gpu" && CARGO_MANIFEST_DIR=$root/gpu timeout 200 "$bin/gla-gpu__test__$t" --test-threads 4 --nocapture \
       > "$logs/$t.log" 2>&1; echo "rc=$?" >> "$logs/$t.log") &
    CHECK_PIDS="$CHECK_PIDS $!"
  done
  for tool in memcheck racecheck; do
    (cd "$root/gpu" && CARGO_MANIFEST_DIR=$root/gpu timeout ${SAN_TIMEOUT:-220} compute-sanitizer --tool $tool --print-limit 0 --error-exitcode 9 \
       "$bin/gla-gpu__test__gpu_backward" --test-threads 1 sanitizer_coverage > "$logs/$tool.log" 2>&1; \
     echo "rc=$?" >> "$logs/$tool.log") &
    CHECK_PIDS="$CHECK_PIDS $!"
  done
}
report_checks() {
  local logs=$1 t tool
  for t in gpu_forward gpu_causality gpu_backward; do
    echo "--- $t: $(grep -E '^test result|^rc=' "$logs/$t.log" | tr '\n' ' ')"
    grep -E "panicked|FAILED|failed" "$logs/$t.log" | head -12 | cut -c1-400
  done
  for tool in memcheck racecheck; do
    echo "--- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^test result|^rc=' "$logs/$tool.log" | sort | uniq -c | tr '\n' ' ')"
    # every report names its kernel (--print-limit 0: none is hidden); count them per kernel
    grep -oE "(at|in) [A-Za-z_][A-Za-z0-9_]*\+0x" "$logs/$tool.log" | sed 's/^at //; s/^in //; s/+0x$//' | sort | uniq -c | head -20
  done
}
start_props() {
  local bin=$1 logs=$2 root=$PWD
  (cd "$root/proptests" && CARGO_MANIFEST_DIR=$root/proptests timeout ${EXTRA_TIMEOUT:-240} \
     "$bin/gla-proptests__test__properties" gpu_ > "$logs/props.log" 2>&1; echo "rc=$?" >> "$logs/props.log") &
  CHECK_PIDS="$CHECK_PIDS $!"
}
start_sweep() {
  local bin=$1 logs=$2
  (timeout ${EXTRA_TIMEOUT:-240} "$bin/glacheck" sweep --impl gpu --precision bf16 --backward \
     --dg-form reverse-cumsum --dg-form local --k 64 --v 64 --t-min 64 --t-max 2048 --out "$logs/sweep" \
     > "$logs/sweep.log" 2>&1; echo "rc=$?" >> "$logs/sweep.log") &
  CHECK_PIDS="$CHECK_PIDS $!"
}
start_huge() {
  local bin=$1 logs=$2 root=$PWD
  (cd "$root/gpu" && CARGO_MANIFEST_DIR=$root/gpu timeout ${HUGE_TIMEOUT:-300} "$bin/gla-gpu__test__gpu_huge" \
     --ignored --test-threads 1 --nocapture ${HUGE_FILTER:-} > "$logs/huge.log" 2>&1; echo "rc=$?" >> "$logs/huge.log") &
  CHECK_PIDS="$CHECK_PIDS $!"
}
report_extras() {
  local logs=$1
  [ -f "$logs/huge.log" ] && echo "--- huge: $(grep -E '^test |^test result|^rc=' "$logs/huge.log" | tr '\n' ' ')"
  [ -f "$logs/props.log" ] && echo "--- props: $(grep -E '^test result|^rc=' "$logs/props.log" | tail -3 | tr '\n' ' ')"
  [ -f "$logs/sweep.log" ] && echo "--- sweep: $(tail -2 "$logs/sweep.log" | tr '\n' ' ')"
  [ -f "$logs/sweep/sweep.csv" ] && python3 - "$logs/sweep/sweep.csv" <<'EOF'
import csv, sys, collections
w = collections.defaultdict(float)
for r in csv.DictReader(open(sys.argv[1])):
    key = (r['implementation'], r['output'])
    w[key] = max(w[key], float(r['ratio']))
for k in sorted(w): print(f"    worst ratio {k[0]} {k[1]}: {w[k]:.4g}")
EOF
  if [ -f "$logs/sweep/sweep.csv" ]; then
    if cmp -s "$logs/sweep/sweep.csv" docs/sweep/gpu-h100/sweep.csv; then
      echo "    sweep.csv equals docs/sweep/gpu-h100/sweep.csv byte for byte"
    else
      echo "    sweep.csv DIFFERS from docs/sweep/gpu-h100/sweep.csv in" \
        "$(diff "$logs/sweep/sweep.csv" docs/sweep/gpu-h100/sweep.csv | grep -c '^<') rows"
    fi
  fi
  return 0
}
unpack_packs() {
  local f
  for f in "$PWD"/.gpu-*.tgz; do
    [ -f "$f" ] && tar xzf "$f" -C "$PWD" && echo "unpacked $(basename "$f")"
  done
  return 0
}
