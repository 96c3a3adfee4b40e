"""Hostile inputs: every call either answers or raises InputError with the file reader's message;
no panic, no crash, no silent misreading of strided or exotic arrays."""

from __future__ import annotations

import numpy as np
import pytest

import glacheck

rng = np.random.default_rng(7)


def problem(b=1, t=9, h=2, k=4, v=3, scalar=False, backward=True):
    x = dict(
        q=rng.standard_normal((b, t, h, k)),
        k=rng.standard_normal((b, t, h, k)),
        v=rng.standard_normal((b, t, h, v)),
        g=-np.abs(rng.standard_normal((b, t, h) if scalar else (b, t, h, k))) / 4,
    )
    if backward:
        x["do"] = rng.standard_normal((b, t, h, v))
    return x


def raises(msg_part: str, **kw):
    with pytest.raises(glacheck.InputError) as e:
        glacheck.oracle(**kw)
    assert msg_part in str(e.value), str(e.value)
    return str(e.value)


def test_wrong_ranks() -> None:
    x = problem()
    raises("<inputs>: tensor `q` has shape [9, 2, 4], expected [B, T, H, K]", **{**x, "q": x["q"][0]})
    raises("tensor `g` has shape [1, 9, 2, 4, 1]", **{**x, "g": x["g"][..., None]})
    raises("tensor `v`", **{**x, "v": np.float64(1.0)})
    raises("tensor `k` has shape", **{**x, "k": x["k"][:, :5]})


def test_nan_inf_and_positive_gates() -> None:
    x = problem()
    q = x["q"].copy()
    q[0, 3, 1, 2] = np.nan
    assert raises("holds NaN", **{**x, "q": q}) == "<inputs>: tensor `q` holds NaN at index [0, 3, 1, 2]"
    v = x["v"].copy()
    v[0, 1, 0, 0] = np.inf
    raises("tensor `v` holds inf", **{**x, "v": v})
    g = x["g"].copy()
    g[0, 2, 1, 3] = 0.5
    raises("gate `g` at index [0, 2, 1, 3] is 5e-1 > 0", **{**x, "g": g})
    g[0, 2, 1, 3] = np.inf
    raises("tensor `g` holds inf", **{**x, "g": g})
    g[0, 2, 1, 3] = -np.inf  # a reset: valid
    assert np.isfinite(glacheck.oracle(**{**x, "g": g}).o).all()


def test_strided_and_negative_stride_arrays_are_read_right() -> None:
    x = problem(t=12)
    base = glacheck.reference.recurrent(**x, compute="f64")
    big = np.zeros((1, 24, 2, 8))
    big[:, ::2, :, ::2] = x["q"]
    flipped = x["k"][:, ::-1].copy()[:, ::-1]  # negative stride on T
    assert flipped.strides[1] < 0
    fortran = np.asfortranarray(x["v"])
    r = glacheck.reference.recurrent(
        **{**x, "q": big[:, ::2, :, ::2], "k": flipped, "v": fortran}, compute="f64"
    )
    for n in ("o", "ht", "dq", "dk", "dv", "dg", "dh0"):
        assert np.array_equal(r[n], base[n]), n


def test_misaligned_and_byteswapped_arrays() -> None:
    x = problem()
    base = glacheck.reference.recurrent(**x, compute="f64")
    # data not aligned to 8 bytes (read-only, from a buffer)
    raw = b"\0" + x["q"].astype("<f8").tobytes()
    mis = np.frombuffer(raw, dtype="<f8", offset=1).reshape(x["q"].shape)
    assert not mis.flags.aligned
    # big-endian values
    swapped = x["v"].astype(">f8")
    # a field of a structured array: stride 12 bytes for 8-byte elements
    rec = np.zeros(x["k"].shape, dtype=[("a", "<f8"), ("b", "<f4")])
    rec["a"] = x["k"]
    assert rec["a"].strides[-1] == 12
    r = glacheck.reference.recurrent(**{**x, "q": mis, "k": rec["a"], "v": swapped}, compute="f64")
    for n in ("o", "ht", "dq", "dk", "dv", "dg", "dh0"):
        assert np.array_equal(r[n], base[n]), n


def test_dtypes() -> None:
    x = problem()
    # mixed float dtypes are fine (each tensor is read exactly)
    r = glacheck.reference.recurrent(
        **{**x, "q": x["q"].astype(np.float16), "k": x["k"].astype(np.float32)}, compute="f64"
    )
    assert r["o"].dtype == np.float64
    raises("tensor `q` has dtype I64; expected a float tensor", **{**x, "q": x["q"].astype(np.int64)})
    raises("tensor `k` has dtype BOOL", **{**x, "k": x["k"] > 0})
    raises("tensor `v` has dtype U8", **{**x, "v": x["v"].astype(np.uint8)})
    raises("tensor `g` has dtype complex128", **{**x, "g": x["g"].astype(complex)})
    raises("tensor `do` has dtype", **{**x, "do": np.array([["a"]])})
    raises("tensor `cu_seqlens` has dtype F64; expected int32 or int64", **{
        **problem(b=1), "cu_seqlens": np.array([0.0, 9.0])})


def test_bfloat16_from_ml_dtypes() -> None:
    ml = pytest.importorskip("ml_dtypes", reason="ml_dtypes not installed: bf16 numpy input not checked")
    x = problem()
    xb = {n: a.astype(ml.bfloat16) for n, a in x.items()}
    r1 = glacheck.reference.recurrent(**xb, compute="f64")
    r2 = glacheck.reference.recurrent(**{n: a.astype(np.float32) for n, a in xb.items()}, compute="f64")
    for n in r1:
        if n != "implementation":
            assert np.array_equal(r1[n], r2[n]), n
    # float8 inputs are exact in f32; float8 outputs have no rounding stage: rejected
    q8 = x["q"].astype(ml.float8_e4m3fn)
    r3 = glacheck.reference.recurrent(**{**x, "q": q8}, compute="f64")
    r4 = glacheck.reference.recurrent(**{**x, "q": q8.astype(np.float32)}, compute="f64")
    assert np.array_equal(r3["o"], r4["o"])
    case = glacheck.case("mild")
    out = {n: a.astype(ml.float8_e4m3fn) if n == "o" else a for n, a in case["truth"].items()}
    with pytest.raises(glacheck.InputError, match="tensor `o` has dtype F8_E4M3"):
        glacheck.judge(case, out)


def test_empty_sequences_and_cu_seqlens() -> None:
    x = problem(t=0)
    r = glacheck.oracle(**x)
    assert r.o.shape == (1, 0, 2, 3) and r.ht.shape == (1, 2, 4, 3)
    x = problem(t=10)
    ok = glacheck.oracle(**x, cu_seqlens=np.array([0, 0, 4, 4, 10], dtype=np.int32))
    assert ok.ht.shape == (4, 2, 4, 3)
    for cu, part in [
        (np.array([0, 5, 3, 10]), "bad cu_seqlens"),
        (np.array([1, 10]), "bad cu_seqlens"),
        (np.array([0, 11]), "bad cu_seqlens"),
        (np.array([[0, 10]]), "tensor `cu_seqlens` has shape [1, 2]"),
        (np.array([0, 2**60]), "too large"),
        (np.array([], dtype=np.int64), "bad cu_seqlens"),
    ]:
        raises(part, **x, cu_seqlens=cu)
    raises("bad cu_seqlens", **problem(b=2, t=4), cu_seqlens=np.array([0, 4]))


def test_scale_and_missing() -> None:
    x = problem()
    raises("metadata `scale` = \"inf\": must be a finite number", **x, scale=float("inf"))
    raises("metadata `scale` = \"nan\"", **x, scale=float("nan"))
    raises("not a decimal number", **x, scale="abc")
    with pytest.raises(glacheck.InputError, match="missing tensor `g`"):
        glacheck.oracle(x["q"], x["k"], x["v"], None)
    with pytest.raises(glacheck.InputError, match="h0"):
        glacheck.oracle(**x, h0=np.zeros((2, 2, 4, 3)))
    with pytest.raises(glacheck.InputError):
        glacheck.oracle(**x, dht=np.zeros((1, 2, 4, 3)), threads=0)


def test_candidate_errors() -> None:
    case = glacheck.case("mild")
    t = case["truth"]
    with pytest.raises(glacheck.InputError, match=r"CANDIDATE <outputs>: tensor `dk` has shape \[2, 64, 1\]"):
        glacheck.judge(case, {**t, "dk": t["dk"][..., 0]})
    with pytest.raises(glacheck.InputError, match="holds none of o, ht"):
        glacheck.judge(case, {"out": t["o"]})
    fwd = {n: v for n, v in case["inputs"].items() if n not in ("do", "dht")}
    with pytest.raises(glacheck.InputError, match="has no `do`"):
        glacheck.judge(fwd, t)
    with pytest.raises(glacheck.InputError, match="chunk must be at least 1"):
        glacheck.judge(case, t, chunk=0)
    with pytest.raises(glacheck.InputError, match="unknown dtype"):
        glacheck.judge(case, t, precision="f8")
    with pytest.raises(glacheck.InputError, match="unknown dg form"):
        glacheck.judge(case, t, dg="cumsum")
    with pytest.raises(TypeError):
        glacheck.judge(case, [t["o"]])


def test_nonfinite_candidate_fails_with_counts() -> None:
    case = glacheck.case("mild")
    out = dict(case["truth"])
    o = out["o"].copy()
    o[1, 7, 0, 2] = np.nan
    o[1, 9, 0, 2] = np.inf
    r = glacheck.judge(case, {**out, "o": o})
    assert not r and r["o"].nonfinite == 2
    assert "FAIL o: 2 non-finite value(s) where the oracle is finite" in str(r)


def test_no_panic_on_hostile_shapes() -> None:
    """Zero-sized dimensions and odd combinations: an answer or InputError, never a crash."""
    shapes = [(0, 3, 1, 2, 2), (1, 3, 0, 2, 2), (1, 3, 1, 0, 2), (1, 3, 1, 2, 0), (0, 0, 0, 0, 0)]
    for b, t, h, k, v in shapes:
        x = problem(b, t, h, k, v)
        try:
            glacheck.oracle(**x)
            glacheck.reference.chunked(**x, plan="bf16")
        except glacheck.InputError:
            pass
    x = problem()
    for form, kw in [("chunked", dict(chunk=0)), ("parallel", dict(dg="local")),
                     ("chunked", dict(plan="tf32")), ("recurrent", dict(compute="f16")),
                     ("quadratic", {})]:
        with pytest.raises(glacheck.InputError):
            glacheck.reference.check(form, **x, **kw)
    with pytest.raises(glacheck.InputError, match="must be a multiple of sub_chunk"):
        glacheck.reference.chunked(**x, chunk=16, sub_chunk=5)
    # in a verdict, a candidate's error is a failure and a GPU without a GPU does not apply
    bad = glacheck.reference.check("chunked", **x, chunk=16, sub_chunk=5)
    assert not bad["pass"] and "multiple of sub_chunk" in bad["error"]
    gpu = glacheck.reference.check("gpu", **x)
    assert gpu["pass"] == ("not_applicable" in gpu or not gpu.get("error"))
