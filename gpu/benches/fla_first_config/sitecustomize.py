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
