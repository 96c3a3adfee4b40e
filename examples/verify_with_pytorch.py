#!/usr/bin/env python3
"""Verify a PyTorch / Triton GLA kernel against glacheck's exact oracle.

Loads a golden fixture (or any glacheck input file) with ``safetensors.torch``, runs a GLA
function on its inputs in the dtype you choose, saves the outputs (o, ht and, via autograd with
the fixture's ``do``/``dht``, dq, dk, dv, dg, dh0) together with the exact inputs the function
consumed (after the cast), and runs ``glacheck verify`` on them.

Conventions are flash-linear-attention's, unchanged: time-major layouts q, k, g ``[B, T, H, K]``,
v ``[B, T, H, V]``, scalar gates ``[B, T, H]``, states ``[N, H, K, V]`` (float32);
natural-log gates ``g = log(alpha)`` in ``[-inf, 0]``; ``scale`` multiplies q (metadata key
``scale``; default ``K ** -0.5``); ``initial_state``, ``output_final_state=True`` and packed
varlen ``cu_seqlens`` (B = 1) exactly as ``fla.ops.gla.chunk_gla`` takes them.

Usage::

    # fla's Triton kernel in bf16 (the default when `fla` is importable and a GPU is present):
    python3 examples/verify_with_pytorch.py fixtures/golden/mild.safetensors --dtype bfloat16

    # the small naive recurrence included below, in float32 on the CPU:
    python3 examples/verify_with_pytorch.py fixtures/golden/mild.safetensors --impl naive --dtype float32

    # your own function: a module attribute path taking fla's arguments
    python3 examples/verify_with_pytorch.py FIXTURE --impl mypkg.ops:my_gla --dtype float16

Options: ``--out-dir`` (where the two files go; default a temp dir), ``--glacheck`` (the binary;
default ``glacheck`` on PATH, else ``cargo run --release -p glacheck --``), ``--precision`` (the
arithmetic claimed to ``glacheck verify``; default from ``--dtype``), ``--chunk`` (default 64),
``--forward-only``, ``--json``. The exit status is ``glacheck verify``'s: 0 pass, 1 fail,
2 bad input.

Requirements: ``torch``, ``safetensors``; optionally ``flash-linear-attention`` (``fla``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

INPUTS = ("q", "k", "v", "g", "h0", "do", "dht", "cu_seqlens")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PRECISION_OF = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def naive_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=True, cu_seqlens=None):
    """The GLA recurrence in float32 (docs/math.md §1), autograd-friendly, fla's signature.

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T;  o_t = scale * S_t^T q_t.  g = -inf is a reset.
    Scalar gates [B, T, H] broadcast over K. Returns (o in q's dtype, final state float32).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    qf, kf, vf, gf = (x.float() for x in (q, k, v, g))
    if gf.dim() == 3:
        gf = gf.unsqueeze(-1).expand(B, T, H, K)
    if cu_seqlens is None:
        spans = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        spans = [(0, cu[n], cu[n + 1]) for n in range(len(cu) - 1)]
    outs = torch.zeros(B, T, H, V, dtype=torch.float32, device=q.device)
    out_rows = {}
    finals = []
    for n, (b, start, end) in enumerate(spans):
        S = (initial_state[n].float() if initial_state is not None
             else torch.zeros(H, K, V, dtype=torch.float32, device=q.device))
        for t in range(start, end):
            alpha = torch.exp(gf[b, t])                                   # [H, K]
            S = alpha.unsqueeze(-1) * S + kf[b, t].unsqueeze(-1) * vf[b, t].unsqueeze(-2)
            out_rows[(b, t)] = scale * torch.einsum("hk,hkv->hv", qf[b, t], S)
        finals.append(S)
    if out_rows:
        idx = sorted(out_rows)
        rows = torch.stack([out_rows[i] for i in idx])                     # [R, H, V]
        bi = torch.tensor([i[0] for i in idx], device=q.device)
        ti = torch.tensor([i[1] for i in idx], device=q.device)
        outs = outs.index_put((bi, ti), rows)
    ht = torch.stack(finals) if output_final_state else None
    return outs.to(q.dtype), ht


def pick_function(name: str, scalar_gates: bool):
    """Resolve --impl: 'auto', 'fla', 'naive' or 'module.path:function'."""
    if name == "naive":
        return naive_gla, "naive float32 recurrence (this script)"
    if name in ("auto", "fla"):
        try:
            if scalar_gates:
                from fla.ops.simple_gla import chunk_simple_gla as fn
                return fn, "fla.ops.simple_gla.chunk_simple_gla"
            from fla.ops.gla import chunk_gla as fn
            return fn, "fla.ops.gla.chunk_gla"
        except ImportError as e:
            if name == "fla":
                sys.exit(f"error: cannot import fla: {e}")
            return naive_gla, "naive float32 recurrence (this script; fla not importable)"
    module, _, attr = name.partition(":")
    if not attr:
        sys.exit(f"error: --impl {name!r}: expected auto, fla, naive or module.path:function")
    return getattr(importlib.import_module(module), attr), name


def glacheck_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    found = shutil.which("glacheck")
    if found:
        return [found]
    return ["cargo", "run", "--quiet", "--release", "-p", "glacheck", "--"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fixture", help="golden fixture or glacheck input file (.safetensors)")
    ap.add_argument("--impl", default="auto", help="auto | fla | naive | module.path:function")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--glacheck", default=None, help="path of the glacheck binary")
    ap.add_argument("--precision", default=None, help="claimed arithmetic: f32, tf32, bf16, f16, f64")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--forward-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    dtype = DTYPES[args.dtype]
    dev = torch.device(args.device)
    raw = load_file(args.fixture)
    with safe_open(args.fixture, framework="pt") as f:
        meta = f.metadata() or {}
    missing = [n for n in ("q", "k", "v", "g") if n not in raw]
    if missing:
        sys.exit(f"error: {args.fixture} lacks {missing}")
    K = raw["q"].shape[-1]
    scale = float(meta["scale"]) if "scale" in meta else K ** -0.5
    backward = not args.forward_only and "do" in raw

    # The inputs exactly as the function consumes them: activations in --dtype, states in float32.
    x = {}
    for n in ("q", "k", "v", "g", "do"):
        if n in raw:
            x[n] = raw[n].to(device=dev, dtype=dtype).contiguous()
    for n in ("h0", "dht"):
        if n in raw:
            x[n] = raw[n].to(device=dev, dtype=torch.float32).contiguous()
    cu = raw["cu_seqlens"].to(device=dev, dtype=torch.long) if "cu_seqlens" in raw else None

    fn, fn_name = pick_function(args.impl, raw["g"].dim() == 3)
    leaves = [n for n in ("q", "k", "v", "g", "h0") if n in x]
    params = {n: x[n].detach().clone().requires_grad_(backward) for n in leaves}
    o, ht = fn(params["q"], params["k"], params["v"], params["g"], scale=scale,
               initial_state=params.get("h0"), output_final_state=True, cu_seqlens=cu)
    outputs = {"o": o.detach(), "ht": ht.detach()}
    if backward:
        seeds_t, seeds_g = [o], [x["do"]]
        if "dht" in x:
            seeds_t.append(ht)
            seeds_g.append(x["dht"].to(ht.dtype))
        torch.autograd.backward(seeds_t, seeds_g)
        for n, out in (("q", "dq"), ("k", "dk"), ("v", "dv"), ("g", "dg"), ("h0", "dh0")):
            if n in params and params[n].grad is not None:
                outputs[out] = params[n].grad.detach()
            elif n in params:
                print(f"# warning: {fn_name} gave no gradient for {n}; {out} not checked", file=sys.stderr)

    out_dir = args.out_dir or tempfile.mkdtemp(prefix="glacheck-verify-")
    os.makedirs(out_dir, exist_ok=True)
    inputs_path = os.path.join(out_dir, "inputs.safetensors")
    cand_path = os.path.join(out_dir, "candidate.safetensors")
    consumed = {n: t.detach().cpu().contiguous() for n, t in x.items()}
    if cu is not None:
        consumed["cu_seqlens"] = raw["cu_seqlens"].contiguous()
    save_file(consumed, inputs_path, metadata={"scale": repr(scale), "producer": fn_name})
    save_file({n: t.cpu().contiguous() for n, t in outputs.items()}, cand_path,
              metadata={"producer": fn_name, "dtype": args.dtype})

    # If the cast changed nothing (golden inputs are exact in bf16, f16 and f32), judge against
    # the fixture itself: its oracle results and magnitudes are loaded instead of recomputed.
    exact = all(torch.equal(consumed[n].double(), raw[n].double()) for n in consumed if n in raw)
    has_golden = "o" in raw and any(n.startswith("m_") for n in raw)
    truth = args.fixture if (exact and has_golden) else inputs_path

    precision = args.precision or PRECISION_OF[args.dtype]
    cmd = glacheck_command(args.glacheck) + [
        "verify", truth, cand_path, "--precision", precision, "--chunk", str(args.chunk)]
    if args.json:
        cmd.append("--json")
    print(f"# {fn_name} on {args.device} in {args.dtype}; inputs: {inputs_path}; outputs: {cand_path}",
          file=sys.stderr)
    print("# " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
