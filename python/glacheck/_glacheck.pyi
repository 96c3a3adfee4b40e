"""Type stubs of the compiled core ``glacheck._glacheck`` (use the ``glacheck`` package)."""

from os import PathLike
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

Tagged = Tuple[str, str, Any]
Memory = Tuple[Sequence[Tagged], Mapping[str, str], str]
Source = Union[str, "PathLike[str]", Memory]

__version__: str
GOLDEN_ORACLE_THREADS: int

class InputError(ValueError):
    """Unusable input; the message is the command line's for the same tensors in a file."""

class InternalError(RuntimeError):
    """A bug in glacheck (a Rust panic caught at the boundary)."""

class VerifyReport:
    """A verify report (wrapped by ``glacheck.Report``)."""

    @property
    def passed(self) -> bool: ...
    def render(self) -> str: ...
    def json(self) -> str: ...

def oracle(
    tensors: Sequence[Tagged],
    metadata: Mapping[str, str],
    threads: Optional[int] = None,
    exact_magnitudes: bool = False,
) -> Dict[str, Any]: ...
def judge(
    inputs: Source,
    outputs: Source,
    truth_mode: str,
    truth_source: Optional[Source],
    precision: str,
    chunk: int,
    dg: str,
    baseline: str = "enforce",
    plan: str = "fla",
) -> VerifyReport: ...
def solve(
    tensors: Sequence[Tagged],
    metadata: Mapping[str, str],
    form: str,
    compute: str,
    round: Optional[str],
    chunk: int,
    sub_chunk: int,
    dg: str,
    backward: Optional[bool],
) -> Dict[str, Any]: ...
def check(
    tensors: Sequence[Tagged],
    metadata: Mapping[str, str],
    form: str,
    compute: str,
    round: Optional[str],
    chunk: int,
    sub_chunk: int,
    dg: str,
) -> Dict[str, Any]: ...
def case_names() -> List[str]: ...
def golden_names() -> List[str]: ...
def golden_bytes(name: str) -> bytes: ...
def case(name: str) -> Dict[str, Any]: ...
def validate(tensors: Sequence[Tagged], metadata: Mapping[str, str], label: str) -> None: ...
def load(path: "str | PathLike[str]") -> Dict[str, Any]: ...
def gate_regimes() -> List[str]: ...
def value_regimes() -> List[str]: ...
def generate(
    b: int,
    t: int,
    h: int,
    k: int,
    v: int,
    *,
    scalar: bool = False,
    gates: str = "mild",
    values: str = "signed-normal",
    h0: bool = False,
    dht: bool = False,
    seq_lens: Optional[Sequence[int]] = None,
    scale: Optional[float] = None,
    grid: str = "bf16",
    seed: int = 0,
) -> Dict[str, Any]: ...
