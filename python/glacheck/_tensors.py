"""Arguments to tagged numpy arrays: the one place where Python objects become tensors.

Every tensor goes to the compiled core as ``(name, tag, array)``: ``tag`` is the safetensors
spelling of its storage dtype and ``array`` a numpy array of that dtype (any strides). The core
copies each array once, exactly, into f64 values, and validates them as it validates a file, so
the messages are the command line's.

Accepted:

* numpy arrays of float64, float32, float16 (as they are, no copy here), bfloat16 from
  ``ml_dtypes`` (viewed as its uint16 bits, no copy), int32 / int64 (``cu_seqlens``); other
  dtypes pass through under their safetensors name (``U8``, ``BOOL``, ...) so the core rejects
  them with the file reader's message;
* torch tensors of any dtype on any device (torch is imported only when one is given): moved to
  the CPU if needed, bfloat16 viewed as its bits, float16/32/64 shared with numpy;
* float8 (``ml_dtypes`` or torch) as *inputs*, converted exactly to float32; as *outputs* they
  are rejected, since the error model has no rounding stage for a float8 result;
* anything ``numpy.asarray`` accepts (lists, scalars, objects with ``__array__``).

Arrays whose data or strides are not aligned to their element size, and arrays in non-native
byte order, are copied once here (the core reads aligned native arrays only).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from ._glacheck import InputError

Tagged = Tuple[str, str, Any]

#: numpy dtype names the core reads, with their tags.
_READ = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int32": "I32",
    "int64": "I64",
}

#: Other dtypes under the names a safetensors header gives them (for the error message).
_OTHER = {
    "bool": "BOOL",
    "int8": "I8",
    "uint8": "U8",
    "int16": "I16",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}

INPUT_NAMES = ("q", "k", "v", "g", "h0", "do", "dht", "cu_seqlens")
OUTPUT_NAMES = ("o", "ht", "dq", "dk", "dv", "dg", "dh0")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _other(name: str) -> str:
    return _OTHER.get(name, name.upper() if name.startswith("float8") else name)


def _native(a: np.ndarray) -> np.ndarray:
    """The array itself if the core can read it in place, else one aligned native copy."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    item = a.dtype.itemsize
    if not a.flags.aligned or any(s % item for s in a.strides):
        a = np.array(a, copy=True, order="C")
    return a


def _from_numpy(name: str, a: np.ndarray, role: str) -> Tagged:
    dt = a.dtype
    if dt.name == "bfloat16":  # ml_dtypes
        return name, "BF16", _native(a).view(np.uint16)
    tag = _READ.get(dt.name)
    if tag is not None:
        return name, tag, _native(a)
    if dt.name.startswith(("float8", "float6", "float4")) and role == "input":
        # exact: every float8 / float6 / float4 value is an f32 value
        return name, "F32", a.astype(np.float32)
    return name, _other(dt.name), a


def _from_torch(name: str, t: Any, role: str) -> Tagged:
    import torch  # only when the caller passed a tensor

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    dt = t.dtype
    if dt == torch.bfloat16:
        return name, "BF16", t.view(torch.int16).numpy().view(np.uint16)
    if dt in (torch.float16, torch.float32, torch.float64, torch.int32, torch.int64):
        return _from_numpy(name, t.numpy(), role)
    dname = str(dt).replace("torch.", "")
    if t.is_floating_point() and role == "input":
        return name, "F32", t.to(torch.float32).numpy()  # exact (float8 and friends)
    return name, _other(dname), np.empty(tuple(t.shape), dtype=np.uint8)


def tagged(name: str, x: Any, role: str = "input") -> Tagged:
    """One argument as ``(name, tag, array)`` (see the module documentation)."""
    if _is_torch(x):
        return _from_torch(name, x, role)
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # e.g. a GPU array without implicit conversion
            raise TypeError(
                f"tensor `{name}`: cannot read a {type(x).__name__} as an array ({e}); pass a "
                "numpy array or a torch tensor"
            ) from None
    return _from_numpy(name, x, role)


def scale_metadata(scale: Any) -> Dict[str, str]:
    """The ``scale`` metadata entry of a file, for a Python number (None: no entry)."""
    if scale is None:
        return {}
    if _is_torch(scale) or isinstance(scale, np.ndarray):
        scale = scale.item() if getattr(scale, "ndim", 0) == 0 else scale
    try:
        x = float(scale)
    except (TypeError, ValueError):
        return {"scale": str(scale)}
    return {"scale": repr(x) if math.isfinite(x) else str(x)}


def problem_tensors(
    named: Mapping[str, Any], scale: Any = None
) -> Tuple[List[Tagged], Dict[str, str]]:
    """Inputs given by name (None values are absent tensors) as tagged arrays and metadata."""
    out = [tagged(n, x, "input") for n, x in named.items() if x is not None]
    return out, scale_metadata(scale)


def mapping_tensors(
    m: Mapping[str, Any], role: str, skip: Iterable[str] = ()
) -> Tuple[List[Tagged], Dict[str, str]]:
    """A mapping of arrays (inputs: may hold ``scale``; outputs) as tagged arrays and metadata."""
    skip = set(skip)
    tensors: List[Tagged] = []
    meta: Dict[str, str] = {}
    for name, x in m.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if x is None or name in skip:
            continue
        if name == "scale":
            meta.update(scale_metadata(x))
            continue
        tensors.append(tagged(name, x, role))
    return tensors, meta


def optional_int(name: str, x: Optional[int], least: int) -> Optional[int]:
    """An integer option (None passes), at least ``least``."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {x!r}")
    if x < least:
        raise InputError(f"{name} must be at least {least}, got {x}")
    return int(x)
