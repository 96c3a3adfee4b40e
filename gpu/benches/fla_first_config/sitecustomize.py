# Correctness runs of fla on the device: with GLA_FLA_NO_AUTOTUNE=1, every Triton autotuner
# keeps only the first admissible config (after the kernel's own pruning) instead of timing all
# of them. Results are those of one of fla's own configs; timings are not fla's tuned ones.
import os
if os.environ.get("GLA_FLA_NO_AUTOTUNE") == "1":
    try:
        from triton.runtime import autotuner as _a
        _orig = _a.Autotuner.prune_configs
        def _first(self, kwargs):
            return list(_orig(self, kwargs))[:1]
        _a.Autotuner.prune_configs = _first
    except Exception as e:  # noqa: BLE001
        print("sitecustomize: autotune patch not applied:", e)

# Precompiling fla's configs in parallel (gpu/device-run-fla-tune.sh): with GLA_FLA_CFG_SLICE=i/n
# (and FLA_CACHE_RESULTS=0, so that no tuning result is stored), every autotuner keeps only the
# admissible configs i, i + n, ... (config 0 if that leaves none), so n processes compile every
# config into a shared Triton cache; a later fresh process then tunes over all configs for real
# without compiling.
_slice = os.environ.get("GLA_FLA_CFG_SLICE")
if _slice:
    try:
        from triton.runtime import autotuner as _a2
        _i, _n = (int(x) for x in _slice.split("/"))
        _orig2 = _a2.Autotuner.prune_configs
        def _sliced(self, kwargs):
            cfgs = list(_orig2(self, kwargs))
            return cfgs[_i::_n] or cfgs[:1]
        _a2.Autotuner.prune_configs = _sliced
    except Exception as e:  # noqa: BLE001
        print("sitecustomize: slice patch not applied:", e)
