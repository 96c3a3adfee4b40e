"""glacheck.oracle reproduces every golden file bit for bit (in the goldens' thread count)."""

from __future__ import annotations

import numpy as np
import pytest

import glacheck


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("name", glacheck.case_names("valid"))
def test_oracle_matches_golden_bitwise(name: str) -> None:
    case = glacheck.case(name)
    assert case["golden"], f"{name}: golden file not embedded in this build"
    r = glacheck.oracle(
        **case["inputs"], threads=glacheck.GOLDEN_ORACLE_THREADS, exact_magnitudes=True
    )
    meta = case["metadata"]
    assert r.precision == int(meta["oracle_precision"])
    assert r.bits_agreed == int(meta["oracle_bits_agreed"])
    for n, want in case["truth"].items():
        got = r[n]
        assert got.dtype == np.float64 and got.shape == want.shape, n
        assert np.array_equal(_bits(got), _bits(want)), f"{name}: {n} differs from the golden"
    for n, want in case["magnitudes"].items():
        got = r["M_" + n[2:]]
        assert np.array_equal(_bits(got), _bits(want)), f"{name}: {n} differs from the golden"


@pytest.mark.parametrize("name", glacheck.case_names("must_reject"))
def test_must_reject_cases_raise_the_validation_message(name: str) -> None:
    case = glacheck.case(name)
    with pytest.raises(glacheck.InputError) as e:
        glacheck.oracle(**case["inputs"])
    assert str(e.value) == "<inputs>: " + case["expected_error"]
    assert isinstance(e.value, ValueError)


def test_embedded_goldens_are_the_repository_files(golden_dir) -> None:
    names = glacheck._glacheck.golden_names()
    assert sorted(names) == sorted(glacheck.case_names())
    for n in names:
        assert glacheck._glacheck.golden_bytes(n) == (golden_dir / f"{n}.safetensors").read_bytes(), n


def test_oracle_forward_only_and_f64_magnitudes() -> None:
    c = glacheck.case("mild")
    x = {k: v for k, v in c["inputs"].items() if k not in ("do", "dht")}
    r = glacheck.oracle(**x, threads=2)
    assert set(r) >= {"o", "ht", "M_o", "M_ht", "precision", "bits_agreed"}
    assert "dq" not in r and "M_dq" not in r
    assert np.array_equal(r.o, c["truth"]["o"])
    # f64 magnitudes agree with the MPFR ones to about 1e-15 relative
    np.testing.assert_allclose(r.M_o, c["magnitudes"]["m_o"], rtol=1e-13, atol=0)
    assert r.magnitudes == "f64" and r.bits_agreed >= 80
