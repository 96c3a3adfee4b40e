#!/usr/bin/env python3
"""Verify a PyTorch / Triton GLA kernel against glacheck's exact oracle, in process.

Takes a catalog case (by name) or any glacheck input file (a golden fixture, or a safetensors
file of inputs), runs a GLA function on its inputs in the dtype you choose, computes the
gradients by autograd with the case's ``do``/``dht``, and judges o, ht, dq, dk, dv, dg, dh0 with
``glacheck.judge`` -- the judge of ``glacheck verify``, in this process, on the exact inputs the
function consumed (after the cast). No files are written and no binary is called.

Conventions are flash-linear-attention's, unchanged: time-major layouts q, k, g ``[B, T, H, K]``,
v ``[B, T, H, V]``, scalar gates ``[B, T, H]``, states ``[N, H, K, V]`` (float32);
natural-log gates ``g = log(alpha)`` in ``[-inf, 0]``; ``scale`` multiplies q (default
``K ** -0.5``); ``initial_state``, ``output_final_state=True`` and packed varlen ``cu_seqlens``
(B = 1) exactly as ``fla.ops.gla.chunk_gla`` takes them.

Usage::

    # fla's Triton kernel in bf16 (the default when `fla` is importable and a GPU is present):
    python3 examples/verify_with_pytorch.py mild --dtype bfloat16

    # the small naive recurrence included below, in float32 on the CPU:
    python3 examples/verify_with_pytorch.py mild --impl naive --dtype float32

    # any glacheck file, and your own function (a module attribute taking fla's arguments):
    python3 examples/verify_with_pytorch.py fixtures/golden/varlen.safetensors --impl mypkg.ops:my_gla

Options: ``--precision`` (the arithmetic claimed; default from ``--dtype``: bf16, f16, and
tf32-rz for float32 on a GPU, whose Triton dot products truncate f32 operands to TF32, f32 on
the CPU), ``--chunk``
(default 64), ``--forward-only``, ``--json``. Exit status: 0 pass, 1 fail, 2 bad input.

Requirements: ``glacheck`` (``pip install ./python``), ``torch``; optionally
``flash-linear-attention`` (``fla``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import numpy as np
import torch

import glacheck

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def run_kernel(fn, case, dtype, device, backward):
    """Run `fn` on the case's inputs cast to `dtype` (states in float32). Returns the inputs as
    consumed (numpy-convertible tensors) and the outputs (o, ht and the autograd gradients)."""
    raw = case["inputs"]
    x = {}
    for n in ("q", "k", "v", "g", "do"):
        if n in raw:
            x[n] = torch.as_tensor(raw[n]).to(device=device, dtype=dtype).contiguous()
    for n in ("h0", "dht"):
        if n in raw:
            x[n] = torch.as_tensor(raw[n]).to(device=device, dtype=torch.float32).contiguous()
    cu = torch.as_tensor(raw["cu_seqlens"]).to(device=device, dtype=torch.long) if "cu_seqlens" in raw else None
    leaves = [n for n in ("q", "k", "v", "g", "h0") if n in x]
    params = {n: x[n].detach().clone().requires_grad_(backward) for n in leaves}
    o, ht = fn(params["q"], params["k"], params["v"], params["g"], scale=raw["scale"],
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
    consumed = {n: t.detach() for n, t in x.items() if backward or n not in ("do", "dht")}
    if cu is not None:
        consumed["cu_seqlens"] = raw["cu_seqlens"]
    consumed["scale"] = raw["scale"]
    return consumed, outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", help="a catalog case name (glacheck.case_names()) or a glacheck .safetensors file")
    ap.add_argument("--impl", default="auto", help="auto | fla | naive | module.path:function")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default=None, help="claimed arithmetic: f32, tf32, tf32-rz, bf16, f16, f64")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--forward-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    try:
        case = glacheck.load(args.case) if os.path.exists(args.case) else glacheck.case(args.case)
    except glacheck.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "q" not in case["inputs"]:
        print(f"error: {args.case} holds no inputs", file=sys.stderr)
        return 2
    case["inputs"].setdefault("scale", case["inputs"]["q"].shape[-1] ** -0.5)
    dtype = DTYPES[args.dtype]
    backward = not args.forward_only and "do" in case["inputs"]
    fn, fn_name = pick_function(args.impl, case["inputs"]["g"].ndim == 3)
    consumed, outputs = run_kernel(fn, case, dtype, torch.device(args.device), backward)
    for n in ("dq", "dk", "dv", "dg", "dh0")[: 5 if backward else 0]:
        if n not in outputs and (n != "dh0" or "h0" in consumed):
            print(f"# warning: {fn_name} gave no gradient {n}; not checked", file=sys.stderr)

    # The case's stored truth applies when the cast changed no input value (catalog inputs are
    # exact in bf16, f16 and f32); otherwise the oracle runs on the consumed values.
    same = all(
        np.array_equal(torch.as_tensor(consumed[n]).double().cpu().numpy(), np.asarray(case["inputs"][n], np.float64))
        for n in consumed if n != "scale"
    )
    truth = case if same and case.get("golden") else None
    if args.precision:
        precision = args.precision
    elif dtype == torch.float32:
        precision = "tf32-rz" if args.device.startswith("cuda") and fn is not naive_gla else "f32"
    else:
        precision = dtype
    print(f"# {fn_name} on {args.device} in {args.dtype}, judged as {precision}", file=sys.stderr)
    try:
        report = glacheck.judge(consumed, outputs, precision=precision, chunk=args.chunk, truth=truth)
    except glacheck.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report, end="" if not args.json else "\n")
    return 0 if report else 1


if __name__ == "__main__":
    sys.exit(main())
