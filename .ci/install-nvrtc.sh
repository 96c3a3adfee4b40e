#!/usr/bin/env bash
# Install NVRTC (and the CUDA runtime headers) from the Python package index so that gla-gpu's
# kernel-compile test (gpu/tests/nvrtc_compile.rs) really compiles every CUDA kernel on a machine
# without a GPU. Meant to be sourced by .ci/run (it exports LD_LIBRARY_PATH and GLA_NVRTC_INCLUDE);
# when executed instead, it prints the exports to eval.
#
# cudarc (dynamic loading) dlopen()s "libnvrtc.so.13" etc. by name, so the library's folder must be
# on LD_LIBRARY_PATH. The kernels include no CUDA header (they are self-contained), so the include
# folder is exported for completeness only.
_gla_nvrtc_main() {
  local py=${PYTHON:-python3}
  local pkgs="nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96"
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "install-nvrtc: $py has no pip; NVRTC not installed" >&2
    return 1
  fi
  "$py" -m pip install -q --disable-pip-version-check --user $pkgs 2>/dev/null \
    || "$py" -m pip install -q --disable-pip-version-check $pkgs \
    || { echo "install-nvrtc: pip install failed" >&2; return 1; }
  local lib inc
  lib=$("$py" - <<'PY'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
for r in roots:
    for cand in glob.glob(os.path.join(r, "nvidia", "cu13", "lib", "libnvrtc.so*")) + \
                glob.glob(os.path.join(r, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")):
        print(os.path.dirname(cand)); sys.exit(0)
sys.exit(1)
PY
) || { echo "install-nvrtc: libnvrtc.so not found after install" >&2; return 1; }
  inc=$(dirname "$lib")/include
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GLA_NVRTC_INCLUDE="$inc"
  echo "export LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH\""
  echo "export GLA_NVRTC_INCLUDE=\"$inc\""
}
_gla_nvrtc_main
