#!/usr/bin/env bash
# Builds a pack for the GPU machine (run here, on the build machine): the release binaries of one
# revision, in a git-ignored folder that a device call carries (gpu/device-run-ab.sh,
# gpu/device-run-fla-tune.sh). Usage, from the repository root with a clean work tree:
#   bash gpu/make-pack.sh REV DEST [full|bench] [tgz]
# full (default): gla-gpu-bench, gla-gpu__test__gpu_{forward,causality,backward,huge}, glacheck and
#   gla-proptests__test__properties (about 31 MB); bench: gla-gpu-bench only (about 1.1 MB).
# tgz: DEST.tgz (DEST/bin/... inside, about 11 MB for a full pack) instead of the folder, so that
#   two full packs fit one call's carry; the device scripts unpack every .gpu-*.tgz of the
#   checkout first (unpack_packs in gpu/device-checks.sh). Git-ignore it like the folders
#   (/.gpu-*.tgz in .git/info/exclude).
# The work tree is switched to REV for the build and back afterwards. $GPU_PACK names the tool that
# gathers release test binaries into .gpu-pack/bin (default ../shared/tools/gpu-pack); the LD path
# of an NVRTC library is not needed (kernels compile on the GPU machine).
set -eu
rev=$1 dest=${2%/} kind=${3:-full} form=${4:-dir}
tool=${GPU_PACK:-../shared/tools/gpu-pack}
git diff --quiet && git diff --cached --quiet || { echo "make-pack: the work tree has changes; commit or stash them" >&2; exit 2; }
back=$(git symbolic-ref -q --short HEAD || git rev-parse HEAD)
git checkout -q "$rev"
trap 'git checkout -q "$back"' EXIT
case $kind in
  full) "$tool" -p gla-gpu -p glacheck -p gla-proptests > /dev/null
        bins="gla-gpu-bench gla-gpu__test__gpu_forward gla-gpu__test__gpu_causality gla-gpu__test__gpu_backward gla-gpu__test__gpu_huge glacheck gla-proptests__test__properties" ;;
  bench) "$tool" -p gla-gpu > /dev/null; bins="gla-gpu-bench" ;;
  *) echo "make-pack: kind is full or bench, not $kind" >&2; exit 2 ;;
esac
case $form in dir|tgz) ;; *) echo "make-pack: the form is tgz or absent, not $form" >&2; exit 2 ;; esac
rm -rf "$dest" "$dest.tgz"; mkdir -p "$dest/bin"
for b in $bins; do cp ".gpu-pack/bin/$b" "$dest/bin/"; done
if [ "$form" = tgz ]; then
  tar czf "$dest.tgz" -C "$(dirname "$dest")" "$(basename "$dest")" && rm -rf "$dest"
  echo "$dest.tgz: $(git rev-parse --short HEAD) ($rev), $kind, $(du -sh "$dest.tgz" | cut -f1)"
else
  echo "$dest: $(git rev-parse --short HEAD) ($rev), $kind, $(du -sh "$dest" | cut -f1)"
fi
