"""Shared helpers of the glacheck Python tests: the repository's golden files, the command-line
binary (for parity tests), and a minimal safetensors writer (so the tests need no package
beyond numpy)."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import pytest

import glacheck

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "fixtures" / "golden"



def cli_binary() -> Optional[str]:
    """The `glacheck` binary: $GLACHECK_BIN, a release build of this repository, or PATH."""
    env = os.environ.get("GLACHECK_BIN")
    if env:
        return env if Path(env).is_file() else None
    targets = [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]
    for t in targets:
        if t:
            p = Path(t) / "release" / "glacheck"
            if p.is_file():
                return str(p)
    return shutil.which("glacheck")


@pytest.fixture(scope="session")
def cli() -> str:
    b = cli_binary()
    if b is None:
        pytest.skip(
            "the glacheck command-line binary is not built (cargo build --release -p glacheck, "
            "or set GLACHECK_BIN): CLI parity not checked"
        )
    return b


_ST = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32"}


def write_safetensors(
    path: Path, tensors: Mapping[str, np.ndarray], metadata: Optional[Dict[str, str]] = None
) -> Path:
    """Write a safetensors file (row-major little-endian data, header sorted by name)."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = _ST[a.dtype.name]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return path


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float64 values to the nearest bfloat16 (ties to even), returned as float32."""
    f = np.asarray(x, dtype=np.float64).astype(np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = r.astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(f), out, f)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.skip("fixtures/golden is not in this source tree")
    return GOLDEN_DIR
