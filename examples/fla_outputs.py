#!/usr/bin/env python3
"""Run flash-linear-attention's GLA kernels in bf16 on a glacheck golden file and save their
outputs for ``glacheck verify``.

For each kernel (``fused_recurrent`` and ``chunk``: ``fla.ops.gla.fused_recurrent_gla`` /
``chunk_gla`` for per-channel gates, ``fla.ops.simple_gla.fused_recurrent_simple_gla`` /
``chunk_simple_gla`` for scalar gates) the inputs q, k, v, g, do are cast to bf16 (golden inputs
are exact in bf16, so the golden file itself is the kernel's input), h0 and dht stay float32,
the forward runs with ``initial_state``, ``output_final_state=True`` and ``cu_seqlens``, and
autograd with the golden's ``do`` (and ``dht``) gives the gradients. The outputs are saved as
returned (o, dq, dk, dv, dg in bf16; ht, dh0 in float32) to
``OUT_DIR/<golden stem>.fla-<kernel>-bf16.safetensors``; ``OUT_DIR`` defaults to a folder
``fla_outputs`` next to the golden file (a folder, so that ``glacheck fixtures check`` sees no
stray file among the goldens). Then judge each one with::

    glacheck verify fixtures/golden/mild.safetensors \\
        fixtures/golden/fla_outputs/mild.fla-chunk-bf16.safetensors --precision bf16

Usage::

    python3 examples/fla_outputs.py fixtures/golden/mild.safetensors [MORE.safetensors ...] [--out-dir DIR]
        [--kernels fused_recurrent,chunk] [--device cuda] [--forward-only]

Requirements: ``torch``, ``safetensors``, ``flash-linear-attention`` (``fla``) and a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def kernel(name: str, scalar: bool):
    """fla's kernel `name` (fused_recurrent or chunk) for per-channel or scalar gates, called
    as f(q, k, v, g, scale, initial_state, cu_seqlens) -> (o, ht)."""
    if scalar:
        from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
        fn = {"chunk": chunk_simple_gla, "fused_recurrent": fused_recurrent_simple_gla}[name]
        return lambda q, k, v, g, scale, h0, cu: fn(
            q, k, v, g=g, scale=scale, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    from fla.ops.gla import chunk_gla, fused_recurrent_gla
    if name == "chunk":
        return lambda q, k, v, g, scale, h0, cu: chunk_gla(
            q, k, v, g, scale=scale, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    return lambda q, k, v, g, scale, h0, cu: fused_recurrent_gla(
        q, k, v, gk=g, scale=scale, initial_state=h0, output_final_state=True, cu_seqlens=cu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("golden", nargs="+",
                    help="glacheck golden files (fixtures/golden/NAME.safetensors); one process runs them all")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--kernels", default="fused_recurrent,chunk")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--forward-only", action="store_true")
    args = ap.parse_args()
    failed = 0
    for golden in args.golden:
        try:
            run(golden, args)
        except Exception as e:  # one golden's failure (an fla error) must not hide the others
            failed += 1
            print(f"error: {golden}: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


def run(golden: str, args) -> None:
    """Run every kernel of ``args.kernels`` on one golden file and save the outputs."""
    raw = load_file(golden)
    with safe_open(golden, framework="pt") as f:
        meta = f.metadata() or {}
    K = raw["q"].shape[-1]
    scale = float(meta["scale"]) if "scale" in meta else K ** -0.5
    dev = torch.device(args.device)
    bf16 = {n: raw[n].to(dev, torch.bfloat16) for n in ("q", "k", "v", "g", "do") if n in raw}
    f32 = {n: raw[n].to(dev, torch.float32) for n in ("h0", "dht") if n in raw}
    for n, t in bf16.items():  # the cast must not change the inputs the oracle judged
        if not torch.equal(t.double().cpu(), raw[n].double()):
            raise ValueError(f"input {n} is not exact in bf16")
    cu = raw["cu_seqlens"].to(dev, torch.long) if "cu_seqlens" in raw else None
    backward = not args.forward_only and "do" in raw
    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(golden)), "fla_outputs")
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.basename(golden).removesuffix(".safetensors")

    errors = []
    for name in args.kernels.split(","):
        try:
            fn = kernel(name, raw["g"].dim() == 3)
            leaves = {n: t.clone().requires_grad_(backward) for n, t in
                      [("q", bf16["q"]), ("k", bf16["k"]), ("v", bf16["v"]), ("g", bf16["g"])]
                      + ([("h0", f32["h0"])] if "h0" in f32 else [])}
            o, ht = fn(leaves["q"], leaves["k"], leaves["v"], leaves["g"], scale, leaves.get("h0"), cu)
            out = {"o": o.detach(), "ht": ht.detach()}
            if backward:
                seeds, grads = [o], [bf16["do"]]
                if "dht" in f32:
                    seeds.append(ht)
                    grads.append(f32["dht"].to(ht.dtype))
                torch.autograd.backward(seeds, grads)
                for n, g in (("q", "dq"), ("k", "dk"), ("v", "dv"), ("g", "dg"), ("h0", "dh0")):
                    if n in leaves and leaves[n].grad is not None:
                        out[g] = leaves[n].grad.detach()
            path = os.path.join(out_dir, f"{stem}.fla-{name}-bf16.safetensors")
            save_file({n: t.cpu().contiguous() for n, t in out.items()}, path,
                      metadata={"producer": f"fla {name} (bf16)", "golden": os.path.basename(golden)})
            print(f"glacheck verify {golden} {path} --precision bf16")
        except Exception as e:  # report, go on with the next kernel
            errors.append(f"{name}: {type(e).__name__}: {e}")
    if errors:
        raise RuntimeError("; ".join(errors))


if __name__ == "__main__":
    sys.exit(main())
