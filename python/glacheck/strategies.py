"""Hypothesis strategies for GLA problems, drawn by the generator of glacheck's Rust property
suite (``gla_fixtures::gen::ProblemSpec``), so a kernel author property-tests a kernel against
the oracle with the same gate and value regimes, and Hypothesis shrinks a failure to a small one.

Hypothesis draws the *spec* (sizes, lengths at tile edges, regimes, varlen lengths with empty
sequences, scalar gates, optional h0/dhT, a seed); the Rust generator turns it into arrays. The
regime lists are ordered simplest first, so shrinking moves toward mild gates and normal values,
short sequences and small widths.

Regime names are the generator's (those of ``glacheck sweep --regime``). Gate regimes
(``GATE_REGIMES``): zero, mild (fla's ``logsigmoid(N)/16``), moderate, strong, tiny
decays (alpha ~ 1e-12), isolated -inf gates (resets), isolated -300 gates, mixed extremes, and
sums that cross f32's exp limit over a chunk or a sub-chunk. Value regimes (``VALUE_REGIMES``):
signed normal, positive only, wide range (2^-12..2^12), zero rows, prescribed cancellation.

Example (pytest)::

    from hypothesis import given, settings
    import glacheck
    from glacheck.strategies import problems

    @settings(max_examples=50, deadline=None)
    @given(problems(max_t=130))
    def test_my_kernel(p):
        out = my_kernel(**p)                  # o, ht, dq, dk, dv, dg, dh0
        glacheck.assert_close(out, p, precision="bf16")

Each drawn problem is a dict: q, k, v, g, do (float64 numpy arrays, every value exact in the
``grid`` format), h0, dht and cu_seqlens when drawn, and ``scale``: what :func:`glacheck.judge`,
:func:`glacheck.oracle` and :mod:`glacheck.reference` take.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from hypothesis import strategies as st

from . import _glacheck as _core

__all__ = ["GATE_REGIMES", "VALUE_REGIMES", "EDGE_LENGTHS", "generate", "problems", "seq_lens"]

#: The generator's gate regimes, simplest first.
GATE_REGIMES = tuple(_core.gate_regimes())
#: The generator's value regimes, simplest first.
VALUE_REGIMES = tuple(_core.value_regimes())
#: Sequence lengths at the edges of fla's tiles (sub-chunk 16, chunk 64).
EDGE_LENGTHS = (1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129)


from . import generate  # noqa: E402,F401  (re-exported: one problem, no Hypothesis)


@st.composite
def seq_lens(draw: Any, max_total: int, max_seqs: int = 4) -> list:
    """Packed varlen sequence lengths (empty sequences allowed) summing to at least 1."""
    n = draw(st.integers(1, max_seqs))
    each = st.one_of(st.sampled_from((0, 1) + tuple(x for x in EDGE_LENGTHS if x <= max_total)),
                     st.integers(0, max_total))
    lens = [draw(each) for _ in range(n)]
    while sum(lens) > max_total:
        i = max(range(n), key=lambda j: lens[j])
        lens[i] //= 2
    if sum(lens) == 0:
        lens[-1] = 1
    return lens


@st.composite
def problems(
    draw: Any,
    *,
    max_t: int = 130,
    max_b: int = 2,
    max_h: int = 2,
    widths: Sequence[int] = (1, 2, 3, 4, 8, 16, 32),
    k: Optional[int] = None,
    v: Optional[int] = None,
    gates: Sequence[str] = GATE_REGIMES,
    values: Sequence[str] = VALUE_REGIMES,
    scalar_gates: bool = True,
    varlen: bool = True,
    states: bool = True,
    backward: bool = True,
    grid: str = "bf16",
) -> Dict[str, Any]:
    """A GLA problem drawn by the Rust property suite's generator.

    ``k``/``v`` fix the widths (else drawn from ``widths``); ``gates``/``values`` restrict the
    regimes; ``scalar_gates``, ``varlen`` and ``states`` (h0, dhT) allow those features;
    ``backward=False`` drops ``do``; ``grid`` is the format the inputs are exact in."""
    unknown = [x for x in gates if x not in GATE_REGIMES] + [x for x in values if x not in VALUE_REGIMES]
    if unknown:
        raise ValueError(f"unknown regime(s) {unknown}: known {GATE_REGIMES} and {VALUE_REGIMES}")
    kk = k if k is not None else draw(st.sampled_from(tuple(widths)))
    vv = v if v is not None else draw(st.sampled_from(tuple(widths)))
    h = draw(st.integers(1, max_h))
    lens = draw(seq_lens(max_t)) if varlen and draw(st.booleans()) else None
    if lens is None:
        b = draw(st.integers(1, max_b))
        t = draw(st.one_of(st.sampled_from(tuple(x for x in EDGE_LENGTHS if x <= max_t)),
                           st.integers(1, max_t)))
    else:
        b, t = 1, sum(lens)
    p = _core.generate(
        b, t, h, kk, vv,
        scalar=scalar_gates and draw(st.booleans()),
        gates=draw(st.sampled_from(tuple(gates))),
        values=draw(st.sampled_from(tuple(values))),
        h0=states and draw(st.booleans()),
        dht=states and draw(st.booleans()),
        seq_lens=lens,
        scale=draw(st.sampled_from((None, 1.0, 0.25))),
        grid=grid,
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    if not backward:
        p.pop("do", None)
        p.pop("dht", None)
    return p
