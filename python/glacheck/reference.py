"""The reference forms of GLA (``gla_reference``), run through glacheck's implementation registry.

* :func:`recurrent` -- the recurrence ``S_t = diag(alpha_t) S_{t-1} + k_t v_t^T``,
  ``o_t = scale S_t^T q_t`` (docs/math.md §1, §4);
* :func:`parallel` -- the log-space parallel form with a global cumulative gate (§2);
* :func:`chunked` -- the two-level chunked form of fla's kernels (§3, §4), optionally with the
  rounding plan of a bf16 or f16 kernel (inputs rounded to that dtype, then every rounding point
  of fla's kernel emulated), so it is a CPU twin of a low-precision kernel;
* :func:`check` -- one of them judged against the oracle with its own error bound.

Each takes fla's arguments (see :func:`glacheck.oracle`) and returns a dict of float64 numpy
arrays ``o``, ``ht`` and, when ``do`` is given (or ``backward=True``), ``dq``, ``dk``, ``dv``,
``dg``, ``dh0``, plus ``implementation`` (the registry's name, e.g.
``chunked-f32-C64c16-bf16``). ``compute`` is the arithmetic (``"f32"`` or ``"f64"``); inputs are
first rounded to the candidate's input dtype (f32 for f32 compute, the plan's dtype with a plan).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _glacheck as _core
from ._tensors import optional_int, problem_tensors

__all__ = ["recurrent", "parallel", "chunked", "check"]


def _args(q, k, v, g, h0, scale, cu_seqlens, do, dht):  # type: ignore[no-untyped-def]
    named = dict(q=q, k=k, v=v, g=g, h0=h0, do=do, dht=dht, cu_seqlens=cu_seqlens)
    return problem_tensors(named, scale)


def _solve(
    form: str,
    tensors: Any,
    meta: Any,
    compute: str,
    plan: Optional[str],
    chunk: int,
    sub_chunk: int,
    dg: str,
    backward: Optional[bool],
) -> Dict[str, Any]:
    chunk_ = optional_int("chunk", chunk, 1)
    sub_ = optional_int("sub_chunk", sub_chunk, 1)
    return dict(
        _core.solve(tensors, meta, form, compute, plan, chunk_, sub_, dg, backward)
    )


def recurrent(
    q: Any,
    k: Any,
    v: Any,
    g: Any,
    *,
    h0: Any = None,
    scale: Optional[float] = None,
    cu_seqlens: Any = None,
    do: Any = None,
    dht: Any = None,
    compute: str = "f32",
    dg: str = "reverse-cumsum",
    backward: Optional[bool] = None,
) -> Dict[str, Any]:
    """The recurrence in ``compute`` (f32 or f64) arithmetic; ``dg``: the gate-gradient
    algorithm (``reverse-cumsum`` or ``local``). ``backward`` defaults to whether ``do`` is
    given."""
    t, m = _args(q, k, v, g, h0, scale, cu_seqlens, do, dht)
    return _solve("recurrent", t, m, compute, None, 64, 16, dg, backward)


def parallel(
    q: Any,
    k: Any,
    v: Any,
    g: Any,
    *,
    h0: Any = None,
    scale: Optional[float] = None,
    cu_seqlens: Any = None,
    do: Any = None,
    dht: Any = None,
    compute: str = "f32",
    backward: Optional[bool] = None,
) -> Dict[str, Any]:
    """The log-space parallel form (global cumulative gate) in ``compute`` arithmetic."""
    t, m = _args(q, k, v, g, h0, scale, cu_seqlens, do, dht)
    return _solve("parallel", t, m, compute, None, 64, 16, "reverse-cumsum", backward)


def chunked(
    q: Any,
    k: Any,
    v: Any,
    g: Any,
    *,
    h0: Any = None,
    scale: Optional[float] = None,
    cu_seqlens: Any = None,
    do: Any = None,
    dht: Any = None,
    compute: str = "f32",
    plan: Optional[str] = None,
    chunk: int = 64,
    sub_chunk: int = 16,
    dg: str = "reverse-cumsum",
    backward: Optional[bool] = None,
) -> Dict[str, Any]:
    """The chunked form (chunk C = ``chunk``, sub-chunk c = ``sub_chunk``) in ``compute``
    arithmetic; ``plan="bf16"`` or ``"f16"`` rounds the inputs to that dtype and emulates every
    rounding point of fla's kernel plan (docs/math.md §8.1)."""
    t, m = _args(q, k, v, g, h0, scale, cu_seqlens, do, dht)
    return _solve("chunked", t, m, compute, plan, chunk, sub_chunk, dg, backward)


def check(
    form: str,
    q: Any,
    k: Any,
    v: Any,
    g: Any,
    *,
    h0: Any = None,
    scale: Optional[float] = None,
    cu_seqlens: Any = None,
    do: Any = None,
    dht: Any = None,
    compute: str = "f32",
    plan: Optional[str] = None,
    chunk: int = 64,
    sub_chunk: int = 16,
    dg: str = "reverse-cumsum",
) -> Dict[str, Any]:
    """Judge one reference form (``"recurrent"``, ``"parallel"`` or ``"chunked"``) against the
    oracle on the same rounded inputs, with the form's own error bound (what ``glacheck check``
    does for each implementation).

    Returns a dict: ``implementation``, ``pass``, ``tensors`` (one dict per judged tensor:
    ``name``, ``ratio``, ``bound``, ``pass``, ``worst_index``, ... ; outputs of the backward run
    are ``o.bwd``, ``ht.bwd``), ``table`` (the printed table), ``failures`` (a message naming
    each failing tensor; empty when all pass), and ``not_applicable`` or ``error`` when the form
    does not apply (e.g. an input overflows f16) or failed.
    """
    t, m = _args(q, k, v, g, h0, scale, cu_seqlens, do, dht)
    chunk_ = optional_int("chunk", chunk, 1)
    sub_ = optional_int("sub_chunk", sub_chunk, 1)
    r = dict(_core.check(t, m, form, compute, plan, chunk_, sub_, dg))
    r["tensors"] = [dict(x) for x in r["tensors"]]
    return r


