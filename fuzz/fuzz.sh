#!/usr/bin/env bash
# Coverage-guided fuzzing of the gla-fuzz targets with libFuzzer, through cargo-fuzz on stable
# Rust (see fuzz/README.md). Run from anywhere:
#
#   fuzz/fuzz.sh run TARGET [MINUTES [JOBS]]  fuzz TARGET for MINUTES (default 10); new inputs go to
#                                             fuzz/libfuzzer/corpus/TARGET (not committed), a
#                                             finding to fuzz/libfuzzer/artifacts/TARGET/
#   fuzz/fuzz.sh merge TARGET                 minimize the committed corpus plus the new inputs
#                                             into fuzz/corpus/TARGET (named seeds are kept)
#   fuzz/fuzz.sh replay TARGET FILE...        run inputs once (e.g. an artifact)
#
# Targets: safetensors, problem_file, candidate, metadata, builder.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?usage: fuzz/fuzz.sh run|merge|replay TARGET ...}
target=${2:?target name}
case $target in
  safetensors | problem_file | candidate) seeds=(fuzz/corpus/"$target" fixtures/golden) max_len=16384 ;;
  metadata | builder) seeds=(fuzz/corpus/"$target") max_len=4096 ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
work=fuzz/libfuzzer/corpus/$target
mkdir -p "$work"
# --sanitizer none: no -Z flag, so stable rustc builds it; --debug-assertions: overflow checks on,
# as in `cargo test`.
fuzz=(cargo fuzz run --fuzz-dir fuzz/libfuzzer --sanitizer none --debug-assertions "$target")
# cargo fuzz adds -artifact_prefix=fuzz/libfuzzer/artifacts/TARGET/.
opts=(-max_len="$max_len" -timeout=10 -rss_limit_mb=4096 -dict=fuzz/libfuzzer/json.dict)
case $cmd in
  run)
    minutes=${3:-10}
    jobs=${4:-1}
    # -jobs N > 1 runs N fuzzers in parallel, each logging to ./fuzz-<i>.log.
    par=()
    if [ "$jobs" -gt 1 ]; then par=(-jobs="$jobs" -workers="$jobs"); fi
    "${fuzz[@]}" "$work" "${seeds[@]}" -- "${opts[@]}" -max_total_time=$((minutes * 60)) \
      -print_final_stats=1 "${par[@]}"
    ;;
  merge)
    merged=$(mktemp -d)
    "${fuzz[@]}" "$merged" fuzz/corpus/"$target" "$work" -- "${opts[@]}" -merge=1
    # Drop the previously merged inputs (SHA-1 names), keep the named seeds, add what the merge
    # kept unless it is a named seed's copy.
    find fuzz/corpus/"$target" -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
    named=$(find fuzz/corpus/"$target" -type f -exec sha1sum {} + | cut -d' ' -f1)
    for f in "$merged"/*; do
      grep -qx "$(basename "$f")" <<<"$named" || cp "$f" fuzz/corpus/"$target"/
    done
    rm -rf "$merged"
    ls fuzz/corpus/"$target" | wc -l
    ;;
  replay)
    shift 2
    "${fuzz[@]}" "$@" -- "${opts[@]}" -runs=1
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
