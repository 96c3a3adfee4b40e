#!/usr/bin/env python3
"""Write the named seed inputs of fuzz/corpus/ (valid small problems and minimal hostile files).

Run from the repository root: `python3 fuzz/seeds.py`. Only the standard library is used; the
files are deterministic. Inputs the engine found are kept beside these under their SHA-1 names.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FMT = {"F64": "<d", "F32": "<f", "I32": "<i", "I64": "<q", "U8": "<B", "BOOL": "<B"}
SIZE = {"F64": 8, "F32": 4, "I32": 4, "I64": 8, "U8": 1, "F16": 2, "BF16": 2, "BOOL": 1}


def pack(dtype, values):
    if dtype in ("F16",):
        return b"".join(struct.pack("<e", v) for v in values)
    if dtype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    return b"".join(struct.pack(FMT[dtype], v) for v in values)


def header_of(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, values); returns (header dict, data bytes)."""
    h, data = {}, b""
    if metadata:
        h["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        raw = pack(dtype, values)
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return h, data


def file_of(header, data=b""):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def n(shape):
    p = 1
    for d in shape:
        p *= d
    return p


def ramp(shape, lo=-1.0, step=0.125):
    return [lo + step * (i % 16) for i in range(n(shape))]


def gates(shape):
    return [-0.0625 * (i % 9) for i in range(n(shape))]


def problem(b=1, t=3, h=1, k=2, v=2, dtype="F32", scalar=False, h0=False, seeds=False,
            cu=None, cu_dtype="I64", scale="0.5", override=None, drop=()):
    nn = b if cu is None else len(cu) - 1
    ts = [
        ("q", dtype, [b, t, h, k], ramp([b, t, h, k])),
        ("k", dtype, [b, t, h, k], ramp([b, t, h, k], 0.5, -0.0625)),
        ("v", dtype, [b, t, h, v], ramp([b, t, h, v], 2.0, -0.25)),
        ("g", dtype, [b, t, h] if scalar else [b, t, h, k], gates([b, t, h] if scalar else [b, t, h, k])),
    ]
    if h0:
        ts.append(("h0", dtype, [nn, h, k, v], ramp([nn, h, k, v])))
    if seeds:
        ts.append(("do", dtype, [b, t, h, v], ramp([b, t, h, v], 0.25)))
        ts.append(("dht", dtype, [nn, h, k, v], ramp([nn, h, k, v], -0.5)))
    if cu is not None:
        ts.append(("cu_seqlens", cu_dtype, [len(cu)], cu))
    for name, new in (override or {}).items():
        ts = [new if x[0] == name else x for x in ts]
        if not any(x[0] == name for x in ts):
            ts.append(new)
    ts = [x for x in ts if x[0] not in drop]
    ts.sort(key=lambda x: x[0].encode())
    return header_of(ts, {"scale": scale} if scale is not None else None)


def write(target, name, content):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(content)


def files():
    """(name, bytes) of whole files, for the safetensors and problem_file targets."""
    out = []
    add = lambda name, h_d: out.append((name, file_of(*h_d)))
    # Valid problems.
    add("ok_f32", problem())
    add("ok_bf16_scalar_seeds", problem(dtype="BF16", scalar=True, h0=True, seeds=True))
    add("ok_f16_h0", problem(dtype="F16", b=2, h=2, h0=True))
    add("ok_f64_default_scale", problem(dtype="F64", scale=None))
    add("ok_varlen_i64", problem(t=5, cu=[0, 0, 2, 5, 5], h0=True, seeds=True))
    add("ok_varlen_i32", problem(t=4, cu=[0, 1, 4], cu_dtype="I32"))
    add("ok_neg_inf_gate", problem(override={"g": ("g", "F32", [1, 3, 1, 2], [0.0, float("-inf"), -1.0, -0.5, -0.0, -2.0])}))
    add("ok_empty_t", problem(t=0))
    add("ok_with_results", problem(override={"o": ("o", "F32", [1, 3, 1, 2], ramp([1, 3, 1, 2])), "m_o": ("m_o", "U8", [2], [1, 2])}))
    # Framing.
    out.append(("empty", b""))
    out.append(("truncated_length", b"\x10\x00\x00"))
    out.append(("zero_header", struct.pack("<Q", 0)))
    out.append(("header_length_huge", struct.pack("<Q", 1 << 63) + b"{}"))
    out.append(("header_length_1e8", struct.pack("<Q", 100_000_000) + b"{}"))
    out.append(("header_past_end", struct.pack("<Q", 100) + b'{"q":'))
    ok = file_of(*problem())
    out.append(("data_cut_short", ok[:-5]))
    out.append(("trailing_bytes", ok + b"\0" * 8))
    out.append(("header_not_utf8", file_of(b'{"\xff\xfe":{}}')))
    out.append(("header_not_object", file_of(b"[1,2,3]")))
    out.append(("header_deep_nesting", file_of(b"[" * 5000 + b"]" * 5000)))
    out.append(("header_duplicate_key", file_of(
        b'{"q":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"q":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        b"\0" * 4)))
    out.append(("header_duplicate_key_huge_first", file_of(
        b'{"x":{"dtype":"U8","shape":[18446744073709551612],"data_offsets":[0,18446744073709551612]},'
        b'"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}')))
    out.append(("header_duplicate_key_huge_last", file_of(
        b'{"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
        b'"x":{"dtype":"U8","shape":[18446744073709551612],"data_offsets":[0,18446744073709551612]}}')))
    out.append(("metadata_not_string", file_of(b'{"__metadata__":{"scale":0.5}}')))
    # Sizes and offsets.
    out.append(("declares_1e12_f32", file_of({"q": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 4 * 10**12]}})))
    out.append(("declares_1e12_u8", file_of({"x": {"dtype": "U8", "shape": [10**12], "data_offsets": [0, 10**12]}})))
    out.append(("declares_2e64_u8", file_of({"x": {"dtype": "U8", "shape": [2**64 - 4], "data_offsets": [0, 2**64 - 4]}})))
    out.append(("end_offset_u64_max", file_of({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                              "x": {"dtype": "U8", "shape": [2**64 - 5], "data_offsets": [4, 2**64 - 1]}})))
    out.append(("shape_product_overflows", file_of({"q": {"dtype": "F32", "shape": [2**32, 2**32, 2], "data_offsets": [0, 0]}})))
    out.append(("shape_zero_times_huge", file_of({"q": {"dtype": "F32", "shape": [0, 2**63, 4], "data_offsets": [0, 0]}})))
    out.append(("offsets_overlap", file_of({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)))
    out.append(("offsets_gap", file_of({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8)))
    out.append(("offsets_reversed", file_of({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4)))
    out.append(("offsets_misaligned", file_of({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 6]}}, b"\0" * 6)))
    out.append(("offsets_negative", file_of(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}')))
    out.append(("dtype_unknown", file_of({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\0")))
    out.append(("int64_above_2p53", file_of({"cu_seqlens": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}},
                                            struct.pack("<qq", 0, 2**53 + 1))))
    # Problems that must be refused.
    add("q_u8", problem(override={"q": ("q", "U8", [1, 3, 1, 2], [1] * 6)}))
    add("q_i32", problem(override={"q": ("q", "I32", [1, 3, 1, 2], [1] * 6)}))
    add("g_bool", problem(override={"g": ("g", "BOOL", [1, 3, 1, 2], [0] * 6)}))
    add("missing_v", problem(drop=("v",)))
    add("q_rank3", problem(override={"q": ("q", "F32", [1, 3, 2], ramp([1, 3, 2]))}))
    add("g_rank5", problem(override={"g": ("g", "F32", [1, 3, 1, 2, 1], gates([6]))}))
    add("k_wrong_shape", problem(override={"k": ("k", "F32", [1, 3, 1, 3], ramp([9]))}))
    add("h0_wrong_shape", problem(h0=True, override={"h0": ("h0", "F32", [2, 1, 2, 2], ramp([8]))}))
    add("zero_k", problem(k=0))
    add("zero_h", problem(h=0))
    add("g_positive", problem(override={"g": ("g", "F32", [1, 3, 1, 2], [0.0, -1.0, 0.5, -0.5, 0.0, 0.0])}))
    add("g_nan", problem(override={"g": ("g", "F32", [1, 3, 1, 2], [0.0, -1.0, float("nan"), -0.5, 0.0, 0.0])}))
    add("g_pos_inf", problem(override={"g": ("g", "F32", [1, 3, 1, 2], [float("inf")] + [0.0] * 5)}))
    add("q_inf", problem(override={"q": ("q", "F32", [1, 3, 1, 2], [0.0] * 5 + [float("-inf")])}))
    add("v_nan", problem(override={"v": ("v", "F32", [1, 3, 1, 2], [float("nan")] * 6)}))
    add("h0_nan", problem(h0=True, override={"h0": ("h0", "F32", [1, 1, 2, 2], [float("nan")] * 4)}))
    for name, s in [("nan", "NaN"), ("inf", "inf"), ("overflow", "1e999"), ("text", "one half"),
                    ("empty", ""), ("hex", "0x10"), ("spaces", " 0.25 ")]:
        add("scale_" + name, problem(scale=s))
    add("cu_float", problem(cu=[0, 3], cu_dtype="F32"))
    add("cu_u8", problem(cu=[0, 3], cu_dtype="U8"))
    add("cu_not_starting_at_0", problem(cu=[1, 3]))
    add("cu_decreasing", problem(t=3, cu=[0, 2, 1, 3]))
    add("cu_past_t", problem(cu=[0, 5]))
    add("cu_one_entry", problem(t=0, cu=[0]))
    add("cu_empty", problem(cu=[]))
    add("cu_negative", problem(t=3, cu=[0, -2, 3]))
    add("cu_with_b2", problem(b=2, cu=[0, 3]))
    add("cu_rank2", problem(override={"cu_seqlens": ("cu_seqlens", "I64", [1, 2], [0, 3])}))
    add("cu_huge", problem(cu=[0, 2**53]))
    # A tiny file whose problem implies huge tensors: no time steps, yet B, K, V enormous.
    huge = lambda b, k, v: problem(b=b, t=0, k=k, v=v, scale="1")
    add("empty_t_batch_2p40", huge(2**40, 1, 1))
    add("empty_t_state_2p40", huge(1, 2**20, 2**20))
    add("empty_t_state_overflows", huge(1, 2**40, 2**40))
    return out


def metadata_inputs():
    out = []
    for name, body in files():
        if not body:
            continue
        (length,) = struct.unpack("<Q", body[:8]) if len(body) >= 8 else (0,)
        if 8 + length <= len(body) and length < 1 << 20 and not name.startswith("header_"):
            out.append((name, body[8:8 + length] + b"\xff" + body[8 + length:]))
    for s in ["0.125", "-0.0", "1e-320", "1E+2", "+3", ".5", "5.", "NaN", "-inf", "1e309", " 7 ", "", "0x1p-3", "1_000"]:
        out.append(("scale_" + s.strip().replace(".", "p") + "_" + str(len(s)),
                    json.dumps({"__metadata__": {"scale": s, "other": "x"}}).encode()))
    out.append(("metadata_only", b'{"__metadata__":{"format":"pt"}}'))
    out.append(("metadata_empty_object", b'{"__metadata__":{}}'))
    out.append(("metadata_null", b'{"__metadata__":null}'))
    out.append(("empty_object", b"{}"))
    out.append(("unicode_names", json.dumps({"__metadata__": {"\u00e9": "\u2603"},
                                             "": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}).encode()))
    return out


def builder_inputs():
    # flags: 1 scalar, 2 h0, 4 do, 8 dht, 16 scale, 32 cu_seqlens, 64 cu well formed;
    # then B, T, H, K, V; then per tensor a shape byte and one byte per value (0 -> 0.0).
    return [
        ("zeros_valid", bytes([0, 1, 3, 1, 2, 2])),
        ("all_options", bytes([2 | 4 | 8 | 16, 2, 3, 2, 2, 3]) + bytes(range(16, 240, 3))),
        ("scalar_varlen", bytes([1 | 2 | 32 | 64, 1, 7, 1, 3, 2]) + bytes([0]) * 60 + bytes([5, 0, 1, 3, 2, 0])),
        ("nan_in_q", bytes([0, 1, 2, 1, 1, 1, 0, 2])),
        ("positive_gate", bytes([0, 1, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 200])),
        ("neg_inf_gate", bytes([1, 1, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4])),
        ("raw_bits", bytes([16, 1, 1, 1, 1, 1, 0, 0xF0] + [0x11] * 8 + [0, 0xF1] + [0x22] * 8)),
        ("shape_changed", bytes([0, 1, 2, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 3])),
        ("cu_raw", bytes([32, 1, 3, 1, 1, 1]) + bytes(13) + bytes([4, 0, 0x7F, 0x80, 3])),
        ("zero_h", bytes([0, 1, 1, 0, 1, 1])),
        ("scale_inf", bytes([16, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3])),
    ]


if __name__ == "__main__":
    for name, body in files():
        write("safetensors", name, body)
        write("problem_file", name, body)
    for name, body in metadata_inputs():
        write("metadata", name, body)
    for name, body in builder_inputs():
        write("builder", name, body)
