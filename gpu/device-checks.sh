# Shared by the device scripts (source it): the GPU correctness checks of one build.
#   start_checks BIN LOGS  starts gla-gpu's GPU tests (gpu_forward, gpu_causality, gpu_backward,
#                          4 threads each) and compute-sanitizer memcheck + racecheck over
#                          gpu_backward's `sanitizer_coverage` (every kernel) in the background,
#                          from gpu/ with CARGO_MANIFEST_DIR set as cargo would (sanitizers stop after
#                          $SAN_TIMEOUT s, default 220); their process ids
#                          go to CHECK_PIDS (wait $CHECK_PIDS).
#   report_checks LOGS     prints each test binary's result and failures, each sanitizer's summary.
# BIN holds the release test binaries gla-gpu__test__<name>; GLA_REQUIRE_GPU=1 is the caller's.
start_checks() {
  local bin=$1 logs=$2 root=$PWD t tool
  CHECK_PIDS=""
  for t in gpu_forward gpu_causality gpu_backward; do
    (cd "$root/gpu" && CARGO_MANIFEST_DIR=$root/gpu timeout 200 "$bin/gla-gpu__test__$t" --test-threads 4 --nocapture \
       > "$logs/$t.log" 2>&1; echo "rc=$?" >> "$logs/$t.log") &
    CHECK_PIDS="$CHECK_PIDS $!"
  done
  for tool in memcheck racecheck; do
    (cd "$root/gpu" && CARGO_MANIFEST_DIR=$root/gpu timeout ${SAN_TIMEOUT:-220} compute-sanitizer --tool $tool --error-exitcode 9 \
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
  done
}
