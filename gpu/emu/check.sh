#!/usr/bin/env bash
# Runs gpu/emu/fwd_check.cpp (the bf16 forward kernels on the CPU, gpu/emu/emu_ptx.h) against the
# kernel sources of the working tree and of each revision named, and compares their checksum
# lines: two versions of a kernel that claim the same arithmetic must print the same checksums.
#   bash gpu/emu/check.sh                 the working tree
#   bash gpu/emu/check.sh main gpu-wide-d the working tree, then main's and gpu-wide-d's kernels
# The harness and emulator come from the working tree; a revision's gpu/kernels/ must have the
# GLA_EMU switch in gla_common.cuh. Needs g++ (C++17, _Float16). Exit status 0 when every run's
# checks hold and every revision's checksums equal the working tree's.
set -u
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # name kernel-dir
  g++ -std=c++17 -O1 -DGLA_EMU -DGLA_FWD_CU="\"$2/gla_fwd.cu\"" -I"$root/gpu/emu" -I"$2" \
    -Wno-unknown-pragmas -o "$tmp/fwd_check_$1" "$root/gpu/emu/fwd_check.cpp" || return 2
  "$tmp/fwd_check_$1" > "$tmp/$1.log"
  local rc=$?
  echo "=== $1: $(tail -1 "$tmp/$1.log")"
  grep -E "FAILED|differs|NOT FINITE" "$tmp/$1.log"
  return $rc
}
status=0
run worktree "$root/gpu/kernels" || status=1
for rev in "$@"; do
  name=$(printf '%s' "$rev" | tr -c 'A-Za-z0-9_.-' '_')
  mkdir -p "$tmp/src-$name"
  git -C "$root" archive "$rev" gpu/kernels | tar -x -C "$tmp/src-$name" || { status=1; continue; }
  run "$name" "$tmp/src-$name/gpu/kernels" || status=1
  if diff <(grep '^checksum' "$tmp/worktree.log") <(grep '^checksum' "$tmp/$name.log") > "$tmp/diff"; then
    echo "    checksums equal the working tree's"
  else
    echo "    checksums DIFFER from the working tree's:"; sed 's/^/      /' "$tmp/diff"; status=1
  fi
done
exit $status
