"""glacheck: is a Gated Linear Attention kernel right, and by how much may it be wrong?

In-process bindings of the glacheck Rust crates (every number is computed there):

* :func:`oracle` -- the exact answer (MPFR, precision raised until two precisions agree well past
  f64, rounded once to float64) of a GLA problem, with every gradient when ``do`` is given, and
  the magnitudes ``M_*`` of the error model.
* :func:`judge` -- a kernel's outputs against the exact answer, element by element, with the
  componentwise error bound of the arithmetic it claims (bf16, f16, tf32, tf32-rz, f32, f64): the same
  judge, table and JSON as ``glacheck verify``.
* :func:`assert_close` -- the same as a pytest assertion.
* :mod:`glacheck.reference` -- the recurrent, parallel and chunked reference forms (f32/f64,
  with the bf16/f16 kernel rounding plans), and their own verdicts against the oracle.
* :func:`cases` / :func:`case` -- the catalog of named problems (mild and strong gates,
  ``-inf`` resets, tiny decays, partial chunks, varlen with empty sequences, scalar gates, the
  failure modes F1-F11) with their stored oracle truth.

Layouts and conventions are flash-linear-attention's: q, k, g ``[B, T, H, K]``, v, o
``[B, T, H, V]``, scalar gates ``[B, T, H]``, states ``[N, H, K, V]``; natural-log gates
``g = log(alpha)`` in ``[-inf, 0]``; ``scale`` multiplies q (default ``K ** -0.5``); packed
sequences by ``cu_seqlens`` (int32 or int64, B = 1).

Quick start::

    import glacheck, numpy as np
    case = glacheck.case("mild")                        # inputs + stored oracle truth
    outputs = my_kernel(**case["inputs"])               # {"o": ..., "ht": ..., "dq": ...}
    glacheck.assert_close(outputs, case, precision="bf16")

Bad input raises :class:`InputError` (a ``ValueError``) with the message the command line prints
for the same tensors in a file; a bug in glacheck raises :class:`InternalError`. Long calls
release the GIL and honour Ctrl-C.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _glacheck as _core
from ._glacheck import InputError, InternalError
from ._tensors import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    mapping_tensors,
    optional_int,
    problem_tensors,
)

__version__: str = _core.__version__

#: Threads of the pool the golden files' oracle ran in (its last bits depend on the split).
GOLDEN_ORACLE_THREADS: int = _core.GOLDEN_ORACLE_THREADS

#: Names ``precision`` accepts (aliases such as ``"bfloat16"`` or a torch dtype work too).
PRECISIONS: Tuple[str, ...] = ("f64", "f32", "tf32", "tf32-rz", "bf16", "f16")

#: Names ``dg`` accepts: the gate-gradient algorithm a kernel runs.
DG_FORMS: Tuple[str, ...] = ("reverse-cumsum", "local")

__all__ = [
    "InputError",
    "InternalError",
    "OracleResult",
    "Report",
    "TensorResult",
    "Case",
    "oracle",
    "judge",
    "assert_close",
    "cases",
    "case",
    "case_names",
    "load",
    "validate",
    "generate",
    "reference",
    "PRECISIONS",
    "DG_FORMS",
    "GOLDEN_ORACLE_THREADS",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
]

PathLike = Union[str, "os.PathLike[str]"]


def _precision(p: Any) -> str:
    s = str(p)
    return s[len("torch."):] if s.startswith("torch.") else s


# ---------------------------------------------------------------------------------------------
# The oracle


class OracleResult(dict):
    """The oracle's answer: a dict of float64 numpy arrays and facts about the run.

    Keys: ``o``, ``ht`` and, when ``do`` was given, ``dq``, ``dk``, ``dv``, ``dg`` (local form,
    exact), ``dh0`` and ``dg_reverse_cumsum`` (cross-check); the magnitudes ``M_o``, ``M_ht``
    (and ``M_dq``, ``M_dk``, ``M_dv``, ``M_dh0``, ``M_dg`` of the reverse-cumsum algorithm,
    ``M_dg_local``); ``precision`` (bits of the returned values), ``bits_agreed`` (bits on which
    the last two precisions agree in every element, at least 80), ``limiting`` (the element that
    agreed least) and ``magnitudes`` (``"f64"`` or ``"mpfr"``). Gate-shaped arrays of scalar-gate
    problems are ``[B, T, H]``. Keys are also attributes (``r.o``, ``r.bits_agreed``).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        arrays = ", ".join(k for k in self if hasattr(self[k], "shape"))
        return (
            f"OracleResult({arrays}; precision={self.get('precision')}, "
            f"bits_agreed={self.get('bits_agreed')})"
        )


def oracle(
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
    threads: Optional[int] = None,
    exact_magnitudes: bool = False,
) -> OracleResult:
    """The exact answer of a GLA problem (the MPFR oracle), as float64 numpy arrays.

    Arguments are fla's (``chunk_gla``): q, k ``[B, T, H, K]``, v ``[B, T, H, V]``, log gates g
    ``[B, T, H, K]`` or ``[B, T, H]`` (scalar), optional initial state ``h0`` ``[N, H, K, V]``,
    ``scale`` (default ``K ** -0.5``), ``cu_seqlens`` (int32/int64, B = 1), and the backward seeds
    ``do`` ``[B, T, H, V]`` and ``dht`` ``[N, H, K, V]``: with ``do`` every gradient is computed.
    Arrays may be numpy (float16/32/64, ml_dtypes bfloat16) or torch tensors of any float dtype
    on any device; values are taken exactly.

    ``threads``: run in a pool of that many threads (default: all cores). The oracle's last bits
    (``bits_agreed``; very rarely a returned value's last bit) depend on how its work is split:
    ``threads=glacheck.GOLDEN_ORACLE_THREADS`` reproduces the golden files bit for bit.
    ``exact_magnitudes``: compute ``M_*`` in MPFR, as the golden files store them (default: in
    f64, as the judge does when it runs the oracle itself).

    Cost: about 16 MPFR operations per (t, k, v) element for forward + backward (about 9 s for
    B=1, T=1024, H=4, K=V=64 on 2 cores). Releases the GIL; Ctrl-C raises KeyboardInterrupt at
    once (the abandoned computation finishes in the background).

    Raises InputError (a ValueError) for an invalid problem, with the command line's message.
    """
    named = dict(q=q, k=k, v=v, g=g, h0=h0, do=do, dht=dht, cu_seqlens=cu_seqlens)
    tensors, meta = problem_tensors(named, scale)
    threads = optional_int("threads", threads, 1)
    return OracleResult(_core.oracle(tensors, meta, threads, bool(exact_magnitudes)))


# ---------------------------------------------------------------------------------------------
# The judge


def _num(x: Any) -> Any:
    # the JSON spells non-finite numbers "NaN", "inf", "-inf"
    return float(x) if isinstance(x, str) else x


@dataclass(frozen=True)
class TensorResult:
    """The verdict on one output tensor (one row of the report).

    ``ratio`` = max |x - x*| / ((sum u_s + u_acc) M_x + eta) over the elements where both are
    finite; it passes when ``ratio <= bound`` and no element is non-finite where the exact one is
    finite. ``worst_index`` (``[b, t, h, channel]`` or ``[n, h, k, v]``) is where the ratio is
    attained, ``worst_at`` the same in words, ``candidate`` / ``exact`` / ``magnitude`` the
    values there.
    """

    name: str
    stored_dtype: str
    ratio: float
    bound: float
    passed: bool
    worst_index: Optional[Tuple[int, ...]]
    worst_at: Optional[str]
    candidate: Optional[float]
    exact: Optional[float]
    magnitude: Optional[float]
    nonfinite: int
    first_nonfinite: Optional[str]
    oracle_nonfinite: int
    max_abs_err: float
    max_abs_exact: float
    rel_err: float
    dg_ratios: Optional[Dict[str, float]]
    model: Dict[str, float]

    @classmethod
    def _from_json(cls, t: Mapping[str, Any]) -> "TensorResult":
        w = t.get("worst") or {}
        dg = t.get("dg_ratios")
        return cls(
            name=t["name"],
            stored_dtype=t["stored_dtype"],
            ratio=float(_num(t["ratio"])),
            bound=float(_num(t["bound"])),
            passed=bool(t["pass"]),
            worst_index=tuple(w["index"]) if w else None,
            worst_at=w.get("at") if w else None,
            candidate=float(_num(w["candidate"])) if w else None,
            exact=float(_num(w["exact"])) if w else None,
            magnitude=float(_num(w["magnitude"])) if w else None,
            nonfinite=int(t["nonfinite_where_oracle_finite"]),
            first_nonfinite=t.get("first_nonfinite"),
            oracle_nonfinite=int(t["oracle_nonfinite"]),
            max_abs_err=float(_num(t["max_abs_err"])),
            max_abs_exact=float(_num(t["max_abs_exact"])),
            rel_err=float(_num(t["rel_err"])),
            dg_ratios=({k: float(_num(x)) for k, x in dg.items()} if dg else None),
            model={k: float(_num(x)) for k, x in t["model"].items()},
        )

    def __bool__(self) -> bool:
        return self.passed


class Report:
    """The judge's verdict on a candidate: one :class:`TensorResult` per output it holds.

    ``bool(report)``: every tensor passes. ``str(report)``: the table ``glacheck verify`` prints.
    ``report.to_dict()``: what ``glacheck verify --json`` prints. ``report["dk"]`` or
    ``report.tensors["dk"]``: one tensor's verdict. ``report.truth``: where the exact answer
    came from (a golden file's stored oracle result, or the MPFR oracle run now).

    For arrays held in memory the files are named ``<inputs>`` / ``<outputs>`` (or
    ``<case NAME>``) instead of paths; otherwise text and JSON are the command line's, byte for
    byte.
    """

    def __init__(self, core: Any) -> None:
        self._core = core
        self._json: Optional[Dict[str, Any]] = None

    def _data(self) -> Dict[str, Any]:
        if self._json is None:
            self._json = json.loads(self._core.json())
        return self._json

    def to_dict(self) -> Dict[str, Any]:
        """The report as ``glacheck verify --json`` prints it (a fresh dict each call)."""
        return json.loads(self._core.json())

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def passed(self) -> bool:
        """True when every tensor passes."""
        return bool(self._core.passed)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return str(self._core.render())

    def __repr__(self) -> str:
        names = ", ".join(
            f"{t.name}{'' if t.passed else ' FAIL'}" for t in self.tensors.values()
        )
        return f"<glacheck.Report {'PASS' if self.passed else 'FAIL'}: {names}>"

    @property
    def tensors(self) -> Dict[str, TensorResult]:
        """Per-tensor verdicts by name, in report order."""
        return {t["name"]: TensorResult._from_json(t) for t in self._data()["tensors"]}

    def __getitem__(self, name: str) -> TensorResult:
        return self.tensors[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tensors.values())

    @property
    def failures(self) -> List[str]:
        """Names of the failing tensors."""
        return [t.name for t in self.tensors.values() if not t.passed]

    @property
    def truth(self) -> str:
        """Where the exact answer came from, in words."""
        return str(self._data()["oracle"])

    @property
    def precision(self) -> str:
        """The arithmetic the candidate was judged as."""
        return str(self._data()["precision"])

    @property
    def notes(self) -> List[str]:
        """Notes of the judge (e.g. a rounding stage added for a coarse storage dtype)."""
        return list(self._data()["notes"])


class Case(dict):
    """A catalog case: a dict with ``name``, ``description``, ``regime``, ``failure_mode``,
    ``kind`` (``"valid"`` or ``"must_reject"``), ``seed``, ``inputs`` (the tensors as stored:
    float32 arrays, int64 ``cu_seqlens``, and ``scale``), ``truth`` (the oracle's float64 o, ht,
    dq, dk, dv, dg, dh0), ``magnitudes`` (``m_o`` ... ``m_dg_local``, MPFR), ``metadata`` (the
    golden file's), ``golden`` (whether the truth is embedded), and for must-reject cases
    ``expected_error`` (the message any valid implementation's validation gives).

    ``oracle(**case["inputs"])`` recomputes the truth; ``judge(case, outputs)`` judges a
    kernel's outputs against the stored one.
    """

    def __repr__(self) -> str:
        return f"<glacheck.Case {self.get('name')!r} ({self.get('kind')}): {self.get('regime')}>"


def case_names(kind: Optional[str] = None) -> List[str]:
    """The catalog's case names in catalog order (``kind``: ``"valid"`` or ``"must_reject"``
    to select)."""
    names = list(_core.case_names())
    if kind is None:
        return names
    if kind not in ("valid", "must_reject"):
        raise InputError(f"kind must be 'valid' or 'must_reject', got {kind!r}")
    return [n for n in names if case(n)["kind"] == kind]


def case(name: str) -> Case:
    """One catalog case by name (see :class:`Case`)."""
    return Case(_core.case(str(name)))


def load(path: PathLike) -> Case:
    """A glacheck safetensors file (a golden file, an input file) split like a :class:`Case`:
    ``inputs``, ``truth`` and ``magnitudes`` (those present), ``metadata``, and ``path``.
    ``judge(load(path), outputs)`` names the file by its path, as the command line does."""
    return Case(_core.load(os.fspath(path)))


def cases(kind: Optional[str] = None) -> List[Case]:
    """Every catalog case (``kind``: ``"valid"`` or ``"must_reject"`` to select)."""
    return [case(n) for n in case_names(kind)]


def _is_case(x: Any) -> bool:
    return isinstance(x, Mapping) and "inputs" in x and isinstance(x["inputs"], Mapping)


def _case_source(c: Mapping[str, Any]) -> Tuple[List[Any], Dict[str, str], str]:
    tensors, meta = mapping_tensors(c["inputs"], "input")
    for part in ("truth", "magnitudes"):
        t, _ = mapping_tensors(c.get(part) or {}, "output")
        tensors.extend(t)
    meta = {**{str(k): str(v) for k, v in (c.get("metadata") or {}).items()}, **meta}
    label = c["path"] if isinstance(c.get("path"), str) else f"<case {c.get('name', '?')}>"
    return tensors, meta, label


def _source(x: Any, role: str) -> Any:
    """A judge argument as the core takes it: a path, or (tensors, metadata, label)."""
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    if _is_case(x):
        return _case_source(x)
    if isinstance(x, Mapping):
        tensors, meta = mapping_tensors(x, role)
        return tensors, meta, "<inputs>" if role == "input" else "<outputs>"
    raise TypeError(
        f"{'inputs' if role == 'input' else 'outputs'}: expected a path, a glacheck case or a "
        f"mapping of tensor names to arrays, got {type(x).__name__}"
    )


def judge(
    inputs: Any,
    outputs: Any,
    *,
    precision: Any = "bf16",
    chunk: int = 64,
    dg: str = "reverse-cumsum",
    truth: Any = None,
    baseline: str = "enforce",
    plan: str = "fla",
) -> Report:
    """Judge a kernel's outputs against the exact answer: ``glacheck verify`` in process.

    ``inputs``: the inputs exactly as the kernel consumed them (after any cast): a mapping
    ``{"q": ..., "k": ..., "v": ..., "g": ..., "h0"?, "do"?, "dht"?, "cu_seqlens"?, "scale"?}``,
    a :class:`Case` (its stored truth is used), or the path of a safetensors file (a golden
    file's stored truth is used). ``outputs``: the kernel's ``o``, ``ht`` and any of ``dq``,
    ``dk``, ``dv``, ``dg``, ``dh0`` as a mapping (None values skipped) or a safetensors path;
    every tensor present is judged (gradients need ``do`` in the inputs).

    ``precision``: the arithmetic the kernel claims (``f64``, ``f32``, ``tf32``, ``tf32-rz``, ``bf16``,
    ``f16``; sets the unit roundoffs and, below f32, the rounding stages of fla's kernel plan).
    ``chunk``: the kernel's chunk length C (sets n_acc and lambda). ``dg``: the gate-gradient
    algorithm it runs (``reverse-cumsum`` or ``local``; both ratios are reported).
    ``truth``: ``None`` or ``"auto"`` (stored in ``inputs`` when it is a golden file or a case;
    else the oracle for problems up to 2^24 state updates ``B*T*H*K*V``, the certified f64
    truth above), ``"oracle"`` (always run the oracle), ``"f64"`` (the certified f64 truth: the
    f64 recurrence with its own derived bound charged to every element, so a pass is a pass
    against the oracle; seconds at training shapes; docs/math.md §8.4), ``"stored"`` (must be
    stored in ``inputs``), or a golden path / :class:`Case` whose stored truth answers these
    inputs (it is checked that its inputs are the same values). ``report.truth`` names the one
    used.
    ``baseline``: ``"enforce"`` (default) or ``"advisory"``: whether the two empirical verdicts
    (at most 2x the error of glacheck's honest implementations of the declared arithmetic; no
    certain bias beyond theirs; docs/math.md §8.2, "Verifier power") fail a tensor or only warn,
    as ``glacheck verify --baseline``.
    ``plan``: which intermediates a tf32 / bf16 / f16 kernel rounds: ``"fla"`` (fla's kernel
    plan, the default) or ``"tensor-core"`` (also the factors of A's off-diagonal sub-blocks and
    dA, what a kernel rounds that runs those products on tensor cores); sets the bound's
    rounding stages and the honest baseline's plan, as ``glacheck verify --plan``.

    The error model is docs/math.md §8.1: per element
    ``|x - x*| <= (sum u_s + c u_acc (n_acc + lambda)) M_x + eta``. Returns a :class:`Report`;
    raises InputError for unusable inputs or outputs (the command line's messages).
    """
    chunk_ = optional_int("chunk", chunk, 1)
    if isinstance(truth, str) and truth in ("auto", "oracle", "stored", "f64"):
        mode, tsrc = truth, None
    elif truth is None:
        mode, tsrc = "auto", None
    else:
        mode, tsrc = "file", _source(truth, "input")
    core = _core.judge(
        _source(inputs, "input"),
        _source(outputs, "output"),
        mode,
        tsrc,
        _precision(precision),
        chunk_,
        dg,
        baseline,
        plan,
    )
    return Report(core)


def assert_close(
    outputs: Any,
    inputs: Any,
    *,
    precision: Any = "bf16",
    chunk: int = 64,
    dg: str = "reverse-cumsum",
    truth: Any = None,
    baseline: str = "enforce",
    plan: str = "fla",
) -> Report:
    """Assert that a kernel's outputs are within the error bound of ``precision``.

    Arguments as :func:`judge` (note the order: outputs first, like ``torch.testing``). Raises
    ``AssertionError`` whose message is the report table, naming each failing tensor, its worst
    element, the candidate and exact values there and the ratio to the bound. Returns the
    :class:`Report` when everything passes.

    A pytest recipe over the catalog and dtypes::

        import glacheck, pytest, torch

        @pytest.mark.parametrize("name", glacheck.case_names("valid"))
        @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
        def test_my_kernel(name, dtype):
            case = glacheck.case(name)
            x = {n: torch.as_tensor(a) for n, a in case["inputs"].items() if n != "scale"}
            o, ht = my_kernel(x["q"].to(dtype), x["k"].to(dtype), x["v"].to(dtype),
                              x["g"].to(dtype), scale=case["inputs"]["scale"], ...)
            glacheck.assert_close({"o": o, "ht": ht}, case, precision=dtype)

    (catalog inputs are exact in bf16, f16 and f32, so the case's stored truth applies to
    every cast).
    """
    __tracebackhide__ = True  # pytest: show the caller's line
    report = judge(
        inputs, outputs, precision=precision, chunk=chunk, dg=dg, truth=truth, baseline=baseline, plan=plan
    )
    if not report:
        raise AssertionError("\n" + str(report))
    return report


def validate(
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
) -> None:
    """Check that the arguments form a valid GLA problem; raise InputError (the command line's
    message) if not."""
    named = dict(q=q, k=k, v=v, g=g, h0=h0, do=do, dht=dht, cu_seqlens=cu_seqlens)
    tensors, meta = problem_tensors(named, scale)
    _core.validate(tensors, meta, "<inputs>")


def generate(b: int, t: int, h: int, k: int, v: int, **spec: Any) -> Dict[str, Any]:
    """One problem from the generator of glacheck's Rust property suite
    (``gla_fixtures::gen::ProblemSpec``), deterministic in its arguments: a dict with q, k, v, g
    (``[B, T, H]`` for scalar gates), do, and h0, dht, cu_seqlens when asked for (float64 numpy
    arrays, every value exact in ``grid``; cu_seqlens int64), plus ``scale``.

    Keywords: ``scalar`` (bool), ``gates`` (a name of ``glacheck.strategies.GATE_REGIMES``,
    default ``"mild"``), ``values`` (``VALUE_REGIMES``, default ``"signed-normal"``), ``h0``,
    ``dht`` (bools), ``seq_lens`` (packed varlen lengths, empty sequences allowed; then ``b`` is
    1 and ``t`` their sum), ``scale``, ``grid`` (``"bf16"``, ``"f32"``, ``"f64"``), ``seed``.
    Hypothesis strategies over these arguments are in :mod:`glacheck.strategies`.

    >>> p = generate(1, 70, 2, 8, 4, gates="neg-inf-rows", seed=3)
    >>> sorted(n for n in p if n != "scale"), p["q"].shape
    (['do', 'g', 'k', 'q', 'v'], (1, 70, 2, 8))
    """
    return _core.generate(b, t, h, k, v, **spec)


from . import reference  # noqa: E402  (uses the names above)
