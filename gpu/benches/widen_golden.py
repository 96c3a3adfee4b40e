"""Widen a golden's inputs to K = V = 64 (the GPU kernels' smallest size) keeping its gate regime:
extra channels copy existing ones (values stay exact in bf16), q/k/v/do rolled in time so that the
copies differ. Inputs only: glacheck verify runs the oracle."""
import sys, json, numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

def widen(a, axis, n, roll):
    reps = -(-n // a.shape[axis])
    parts = []
    for r in range(reps):
        x = a
        if roll and r:
            x = np.roll(x, r, axis=1)
        parts.append(x)
    return np.take(np.concatenate(parts, axis=axis), np.arange(n), axis=axis)

src, dst = sys.argv[1], sys.argv[2]
raw = load_file(src)
with safe_open(src, framework="numpy") as f:
    meta = f.metadata() or {}
out = {}
for n in ("q", "k", "g"):
    if n in raw:
        a = raw[n]
        if n == "g" and a.ndim == 3:
            out[n] = a
        else:
            out[n] = widen(a, 3, 64, n != "g")
for n in ("v", "do"):
    if n in raw:
        out[n] = widen(raw[n], 3, 64, True)
for n in ("h0", "dht"):
    if n in raw:
        out[n] = widen(widen(raw[n], 2, 64, False), 3, 64, False)
if "cu_seqlens" in raw:
    out["cu_seqlens"] = raw["cu_seqlens"]
m = {}
if "scale" in meta:
    m["scale"] = meta["scale"]
save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, dst, metadata=m)
