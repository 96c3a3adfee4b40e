"""glacheck.judge is `glacheck verify`: same verdicts, same table, same JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import glacheck
from conftest import bf16, write_safetensors

CASES = ["mild", "scalar_varlen", "neg_inf_mid", "f1_tiny_decay"]


def _candidate(case, corrupt: bool = False) -> dict:
    """A bf16 kernel's outputs: o and the input gradients rounded to bf16 (stored as float32),
    the states ht and dh0 in float32 (as fla's kernels return them: a state rounded to bf16 and
    returned as f32 is a bug the baseline rule catches); `corrupt` adds half the largest |dk|
    (plus 1) to one element of dk."""
    out = {n: _rounded(n, a) for n, a in case["truth"].items()}
    if corrupt:
        dk = out["dk"].copy()
        dk[0, 5, 0, 3] += 0.5 * np.abs(dk).max() + 1.0
        out["dk"] = dk
    return out


def _rounded(name: str, a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32) if name in ("ht", "dh0") else bf16(a)


def _cli_json(cli: str, inputs: Path, cand: Path, *args: str) -> tuple:
    p = subprocess.run(
        [cli, "verify", str(inputs), str(cand), "--json", *args], capture_output=True, text=True
    )
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout), p.returncode


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("corrupt", [False, True])
def test_to_dict_equals_cli_json(cli, golden_dir, tmp_path, name, corrupt) -> None:
    case = glacheck.case(name)
    cand = write_safetensors(tmp_path / "cand.safetensors", _candidate(case, corrupt))
    golden = golden_dir / f"{name}.safetensors"
    want, rc = _cli_json(cli, golden, cand, "--precision", "bf16")
    r = glacheck.judge(str(golden), str(cand), precision="bf16")
    assert r.to_dict() == want
    assert bool(r) == (rc == 0) == (not corrupt)
    text = subprocess.run(
        [cli, "verify", str(golden), str(cand), "--precision", "bf16"], capture_output=True, text=True
    ).stdout
    assert str(r) == text
    # arrays in memory: the same report but for the labels
    m = glacheck.judge(case, _candidate(case, corrupt), precision="bf16")
    d = m.to_dict()
    assert (d["input"], d["candidate"]) == (f"<case {name}>", "<outputs>")
    d["input"], d["candidate"] = want["input"], want["candidate"]
    assert d == want


def test_options_reach_the_judge(cli, golden_dir, tmp_path) -> None:
    case = glacheck.case("strong")
    out = {n: a.astype(np.float32) for n, a in case["truth"].items()}
    cand = write_safetensors(tmp_path / "c.safetensors", out)
    g = golden_dir / "strong.safetensors"
    for args, kw in [
        (["--precision", "f32", "--chunk", "16", "--dg", "local"], dict(precision="f32", chunk=16, dg="local")),
        (["--precision", "tf32"], dict(precision="tf32")),
        (["--precision", "tf32-rz"], dict(precision="tf32-rz")),
        (["--precision", "f16", "--chunk", "32"], dict(precision="float16", chunk=32)),
        (["--precision", "bf16", "--plan", "tensor-core"], dict(precision="bf16", plan="tensor-core")),
    ]:
        want, _ = _cli_json(cli, g, cand, *args)
        assert glacheck.judge(g, cand, **kw).to_dict() == want
    with pytest.raises(glacheck.InputError, match="wmma"):
        glacheck.judge(g, cand, precision="bf16", plan="wmma")


def test_oracle_truth_for_plain_inputs(cli, tmp_path) -> None:
    """Inputs without a stored truth: both run the oracle (small problem)."""
    case = glacheck.case("single_step")
    inp = write_safetensors(
        tmp_path / "in.safetensors",
        {k: v for k, v in case["inputs"].items() if k != "scale"},
        {"scale": repr(case["inputs"]["scale"])},
    )
    cand = write_safetensors(tmp_path / "c.safetensors", _candidate(case))
    want, _ = _cli_json(cli, inp, cand, "--precision", "bf16")
    r = glacheck.judge(inp, cand, precision="bf16")
    assert r.to_dict() == want
    assert r.truth.startswith("MPFR oracle")


def test_report_api() -> None:
    case = glacheck.case("mild")
    good = glacheck.judge(case, _candidate(case))
    assert good and good.passed and good.failures == []
    assert good.truth.startswith("golden fixture")
    assert list(good.tensors) == ["o", "ht", "dq", "dk", "dv", "dg", "dh0"]
    bad = glacheck.judge(case, _candidate(case, corrupt=True))
    assert not bad and bad.failures == ["dk"]
    dk = bad["dk"]
    assert not dk and dk.ratio > dk.bound and dk.worst_index == (0, 5, 0, 3)
    assert dk.candidate == pytest.approx(_candidate(case, True)["dk"][0, 5, 0, 3])
    assert dk.exact == case["truth"]["dk"][0, 5, 0, 3]
    assert "FAIL dk: worst element" in str(bad)
    assert repr(bad).startswith("<glacheck.Report FAIL")


def test_assert_close_names_the_tensor() -> None:
    case = glacheck.case("mild")
    glacheck.assert_close(_candidate(case), case, precision="bf16")
    with pytest.raises(AssertionError) as e:
        glacheck.assert_close(_candidate(case, corrupt=True), case, precision="bf16")
    msg = str(e.value)
    assert "FAIL dk: worst element (batch 0, time 5, head 0, k channel 3)" in msg
    assert "FAIL: 1 of 7 tensor(s)" in msg
    # f32 claims a tighter bound: the bf16-rounded outputs fail it
    with pytest.raises(AssertionError):
        glacheck.assert_close(_candidate(case), case, precision="f32")


def test_truth_choices() -> None:
    case = glacheck.case("single_step")
    inputs = dict(case["inputs"])
    out = _candidate(case)
    a = glacheck.judge(inputs, out, truth=case)  # a case's stored truth for plain inputs
    b = glacheck.judge(inputs, out, truth="oracle")
    c = glacheck.judge(inputs, out)  # no stored truth: the oracle runs
    assert a.truth.startswith("golden fixture") and b.truth.startswith("MPFR oracle")
    assert c.truth == b.truth
    for r in (a, b, c):
        assert r.passed
    with pytest.raises(glacheck.InputError, match="holds no stored truth"):
        glacheck.judge(inputs, out, truth="stored")
    other = glacheck.case("mild")
    with pytest.raises(glacheck.InputError, match="answers other inputs"):
        glacheck.judge(inputs, out, truth=other)


def test_forward_only_candidate() -> None:
    case = glacheck.case("varlen")
    out = {n: _rounded(n, case["truth"][n]) for n in ("o", "ht")}
    r = glacheck.judge(case, out)
    assert r and list(r.tensors) == ["o", "ht"]


@pytest.mark.parametrize("name", ["mild", "neg_inf_mid"])
def test_f64_truth(cli, golden_dir, tmp_path, name) -> None:
    """The certified f64 truth: same verdicts as the oracle on honest and corrupted outputs, a
    ratio at least the oracle's, the truth named, and the CLI's --truth f64 JSON identical."""
    case = glacheck.case(name)
    for corrupt in (False, True):
        out = _candidate(case, corrupt)
        a = glacheck.judge(case, out, precision="bf16", truth="f64")
        b = glacheck.judge(case, out, precision="bf16", truth="oracle")
        assert a.truth.startswith("certified f64") and b.truth.startswith("MPFR oracle")
        assert bool(a) == bool(b) == (not corrupt)
        for n, t in a.tensors.items():
            assert t.ratio >= b.tensors[n].ratio * (1 - 1e-12)
        if corrupt:
            assert "FAIL dk" in str(a)
    cand = write_safetensors(tmp_path / "cand.safetensors", _candidate(case))
    inputs = write_safetensors(
        tmp_path / "inputs.safetensors",
        {n: np.asarray(x) for n, x in case["inputs"].items() if n != "scale"},
        {"scale": repr(float(case["inputs"]["scale"]))},
    )
    want, rc = _cli_json(cli, inputs, cand, "--precision", "bf16", "--truth", "f64")
    r = glacheck.judge(str(inputs), str(cand), precision="bf16", truth="f64")
    assert r.to_dict() == want and rc == 0
    assert want["oracle"].startswith("certified f64")
