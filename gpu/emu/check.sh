#!/usr/bin/env bash
# Runs the kernels' CPU emulation (gpu/tests/emu_kernels.rs: gpu/emu/kernels_check.cpp against
# gpu/emu/emu_ptx.h) on the kernel sources of the working tree and of each revision named, and
# compares their checksum lines: versions of a kernel that claim the same arithmetic (a layout, a
# reordering, a new staging scheme) must print the same checksums.
#   bash gpu/emu/check.sh                 the working tree
#   bash gpu/emu/check.sh main gpu-wide-d the working tree, then main's and gpu-wide-d's kernels
#   bash gpu/emu/check.sh --tsan REV...   the same, and each one's ThreadSanitizer race check too
# The harness and the emulator come from the working tree; a revision's gpu/kernels/ must have the
# GLA_EMU switch in gla_common.cuh. Exit status 0 when every run's checks hold and every revision's
# checksums equal the working tree's.
set -u
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tsan=""
[ "${1:-}" = --tsan ] && { tsan="--include-ignored"; shift; }
run() {  # name kernel-dir
  (cd "$root" && GLA_REQUIRE_EMU=1 GLA_EMU_KERNELS="$2" cargo test -q --workspace --test emu_kernels \
     -- --nocapture $tsan) > "$tmp/$1.log" 2>&1
  local rc=$?
  echo "=== $1: $(grep -E '^(all checks hold|SOME CHECKS FAILED)' "$tmp/$1.log" | sort | uniq -c | tr '\n' ' ')rc $rc"
  grep -E "FAILED|differs|NOT FINITE|error|ThreadSanitizer found" "$tmp/$1.log" | head -20
  return $rc
}
status=0
run worktree "$root/gpu/kernels" || status=1
for rev in "$@"; do
  name=$(printf '%s' "$rev" | tr -c 'A-Za-z0-9_.-' '_')
  mkdir -p "$tmp/src-$name"
  git -C "$root" archive "$rev" gpu/kernels | tar -x -C "$tmp/src-$name" || { status=1; continue; }
  run "$name" "$tmp/src-$name/gpu/kernels" || status=1
  if diff <(grep '^checksum' "$tmp/worktree.log" | sort) <(grep '^checksum' "$tmp/$name.log" | sort) > "$tmp/diff"; then
    echo "    checksums equal the working tree's"
  else
    echo "    checksums DIFFER from the working tree's:"; sed 's/^/      /' "$tmp/diff"; status=1
  fi
done
exit $status
