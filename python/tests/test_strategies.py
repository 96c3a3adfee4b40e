"""glacheck.generate and the Hypothesis strategies: the Rust property suite's generator, and a
property over it (the chunked f32 reference within its own bound and the empirical rules)."""

from __future__ import annotations

import numpy as np
import pytest

import glacheck

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from glacheck.strategies import GATE_REGIMES, VALUE_REGIMES, problems  # noqa: E402


def test_regimes_are_the_generators() -> None:
    assert GATE_REGIMES[:2] == ("zero", "mild")
    assert {"tiny", "neg-inf-rows", "minus-300-rows", "mixed-extremes"} <= set(GATE_REGIMES)
    assert VALUE_REGIMES[0] == "signed-normal" and "cancellation" in VALUE_REGIMES


def test_generate_is_deterministic_and_valid() -> None:
    a = glacheck.generate(1, 70, 2, 8, 4, gates="neg-inf-rows", h0=True, seed=3)
    b = glacheck.generate(1, 70, 2, 8, 4, gates="neg-inf-rows", h0=True, seed=3)
    assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a if n != "scale")
    assert np.isneginf(a["g"]).any() and (a["g"] <= 0).all()
    glacheck.validate(**a)
    v = glacheck.generate(1, 9, 1, 2, 2, seq_lens=[0, 4, 0, 5], scalar=True)
    assert list(v["cu_seqlens"]) == [0, 0, 4, 4, 9] and v["g"].shape == (1, 9, 1)
    # bf16 grid: every input exact in bf16
    q = a["q"].astype(np.float32).view(np.uint32)
    assert (q & 0xFFFF == 0).all()


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(gates="huge"), "unknown gate regime `huge`"),
        (dict(values="odd"), "unknown value regime"),
        (dict(grid="f8"), "unknown grid"),
        (dict(seq_lens=[3, 3]), "b must be 1 and t their sum"),
    ],
)
def test_generate_rejects_bad_specs(kw, msg) -> None:
    with pytest.raises(glacheck.InputError, match=msg):
        glacheck.generate(1, 5, 1, 2, 2, **kw)
    with pytest.raises(glacheck.InputError, match="at least 1"):
        glacheck.generate(1, 0, 1, 2, 2)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(problems(max_t=80, max_h=2, widths=(1, 2, 3, 8)))
def test_chunked_f32_within_its_bound_on_drawn_problems(p) -> None:
    out = glacheck.reference.chunked(**p, compute="f32")
    out.pop("implementation", None)
    r = glacheck.judge(p, out, precision="f32")
    assert r, str(r)
